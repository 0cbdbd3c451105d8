"""Solutions to the exercises of notebooks/05_progressive_dropping.ipynb."""

import trimlab


def drops_for_round(scores, drop_rate):
    """The drop_rate least important names, in order (ties: the earlier sub-layer)."""
    return trimlab.rank(scores)[:drop_rate]


def decoder_kept(sizes, removed):
    """Share of the decoder-layer parameters left after removing `removed`."""
    total = sum(sizes.values())
    return 1 - sum(sizes[n] for n in removed) / total


def trim_loop(model, tokenizer, rounds, drop_rate, calib_sample, heal):
    """TrimLLM's loop (Sec. 3.2): heal, score on a fresh calibration sample, drop the
    least important, for ``rounds`` rounds."""
    import trimlab

    dropped = []
    for k in range(1, rounds + 1):
        heal(model, k)
        items = calib_sample(k)
        scores = trimlab.score(model, tokenizer, items, method="loglik", use_context=False)
        names = trimlab.rank(scores)[:drop_rate]
        trimlab.drop(model, names)
        dropped += names
    return dropped


def kd_loss(student_logits, teacher_logits, temperature):
    """T^2 KL(teacher || student) at temperature T, averaged over positions."""
    import torch.nn.functional as F

    t = temperature
    log_p = F.log_softmax(teacher_logits / t, dim=-1)
    log_q = F.log_softmax(student_logits / t, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean() * t * t
