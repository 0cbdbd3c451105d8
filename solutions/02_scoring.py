"""Solutions to the exercises of notebooks/02_scoring.ipynb."""


def calibration_importance(accuracies, eps=1e-3):
    """Eq. 3: s_i = 1 / (a_i + eps), a_i the calibration accuracy without sub-layer i."""
    return {name: 1.0 / (a + eps) for name, a in accuracies.items()}


def activation_importance(norms):
    """Eq. 4: s_i = 1 - n_i / sum_j n_j; the highest norm is the least important."""
    total = sum(norms.values())
    return {name: 1.0 - n / total for name, n in norms.items()}


def drop_one_scan(model, tokenizer, items, names):
    """Eq. 3's a_i: the calibration accuracy with each sub-layer removed in turn."""
    import trimlab

    acc = {}
    for name in names:
        with trimlab.trial_drop(model, [name]):
            acc[name] = trimlab.evaluate(model, tokenizer, items, use_context=False)["acc"]
    return acc


def activation_norm(model, input_ids, name):
    """Eq. 4's n_i = ||A_i||_F / sqrt(N): what sub-layer ``name`` adds to the residual
    stream, read by a forward hook."""
    import torch

    block, kind = name.split(".")
    layer = model.model.layers[int(block)]
    module = layer.self_attn if kind == "attn" else layer.mlp
    seen = []
    handle = module.register_forward_hook(
        lambda _m, _i, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        with torch.no_grad():
            model(input_ids=input_ids)
    finally:
        handle.remove()
    a = seen[0].reshape(-1, seen[0].shape[-1])
    return float(a.norm() / a.shape[0] ** 0.5)


def both_order(accuracies, norms, n):
    """'both': most items right without it first; ties (within 1/(2n)) by the highest
    activation norm; equal norms keep forward order (sorted is stable)."""
    return sorted(accuracies, key=lambda m: (-round(accuracies[m] * n), -norms[m]))
