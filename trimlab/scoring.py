"""Importance scores: which sub-layers matter least to a domain (TrimLLM Sec. 3.3).

Every method returns ``{name: importance}`` over the remaining sub-layers, and
:func:`rank` orders them from least to most important (the first is dropped first),
with ties broken by forward position, so the same inputs always give the same order.

* ``calibration`` (Eq. 3): drop sub-layer i temporarily, measure accuracy a_i on a
  calibration sample; importance ``s_i = 1 / (a_i + eps)``. The fast scan computes the
  hidden states below block i once per batch and re-runs only block i and up.
* ``loglik`` (trimlab's extension, not in the paper): the same drop-one scan as Eq. 3,
  scored by the mean log-likelihood of the correct answer instead of accuracy,
  ``s_i = -ll_i``. Continuous, so it still separates candidates when a small
  calibration sample gives many equal a_i, or when accuracy has fallen to chance.
* ``activation`` (Eq. 4): ``n_i = ||A_i||_F / sqrt(N)``, the Frobenius norm of the
  (N tokens x d) matrix of what sub-layer i adds to the residual stream, over all N
  non-padding tokens of all calibration sequences: the root-mean-square token norm.
  The paper drops the *highest* norm first, so ``s_i = 1 - n_i / sum_j n_j``.
* ``both``: calibration first; sub-layers whose a_i are equal (the same number of
  calibration items right: a tolerance of half a step, 1/(2n)) are ordered by the
  activation score.
* Peers: ``block_influence`` (ShortGPT's BI, ``1 - cos(x_in, x_out)`` per token; at
  sub-layer level this is LLM-Drop's module cosine), ``angular`` (Gromov et al.'s
  ``arccos(cos) / pi`` between the stream before and after, at the last token), and the
  rule-based baselines of the paper's Table 3: ``random``, ``top``, ``bottom``.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch
from transformers import PreTrainedModel

from trimlab import surgery
from trimlab.evaluate import choice_logliks, summarize, validate_items
from trimlab.prompts import build_prompt, continuation

METHODS = (
    "calibration",
    "loglik",
    "activation",
    "both",
    "block_influence",
    "angular",
    "random",
    "top",
    "bottom",
)
DEFAULT_EPS = 1e-3


class Scores(dict):
    """``{name: importance}`` plus ``details`` (per-name measurements) and ``method``."""

    def __init__(self, scores: dict[str, float], method: str, details: dict | None = None, **info):
        super().__init__(scores)
        self.method = method
        self.details = details or {}
        self.info = info


def rank(scores: dict[str, float], order: Sequence[str] | None = None) -> list[str]:
    """Names from least to most important; ties go to the earlier name in ``order``
    (forward order by default)."""
    order = list(order) if order is not None else sorted(scores, key=_position_key)
    pos = {n: i for i, n in enumerate(order)}
    return sorted(scores, key=lambda n: (scores[n], pos.get(n, len(pos))))


def _position_key(name: str) -> tuple[int, int]:
    block, kind = surgery.parse_name(name)
    return block, surgery.KINDS.index(kind)


# --- calibration (Eq. 3) ---------------------------------------------------------------


def _scan_start(model: PreTrainedModel, name: str) -> int:
    """Lowest block position that must run when ``name`` is trial-dropped: its own block,
    or lower if no attention would run above it (the cache needs one real attention)."""
    ids = surgery.block_ids(model)
    position = ids.index(surgery.parse_name(name)[0])
    fam = surgery.family_of(model)
    blocks = surgery.layer_list(model)
    present = [surgery._present(b, fam.attn) for b in blocks]
    if name.endswith(".attn"):
        present[position] = False
    if any(present[position:]) or not any(present[:position]):
        return position
    return max(i for i in range(position) if present[i])


def scan(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    names: Sequence[str] | None = None,
    batch_size: int | None = None,
    use_context: bool = True,
    chunk: int = 64,
    fast: bool = True,
    progress: bool = False,
    return_logliks: bool = False,
    max_length: int | None = None,
) -> tuple:
    """Drop-one evaluation: the metrics of the model without each sub-layer in turn.

    Returns ``(base, {name: metrics})`` where metrics are :func:`trimlab.evaluate`'s
    ``acc, acc_norm, ll, n``. With ``fast=True`` the block inputs of a reference run are
    recorded per chunk of ``chunk`` items, and each candidate re-runs only from its own
    block upward (:func:`trimlab.surgery.run_from`); ``fast=False`` re-evaluates the
    whole model per candidate. Both give the same numbers. The model comes back bit-exact.
    ``return_logliks=True`` adds the per-item choice log-likelihoods, base and per name.
    """
    items = validate_items(items)
    names = list(names) if names is not None else surgery.sublayers(model)
    surgery.check_names(model, names)
    kw = dict(batch_size=batch_size, use_context=use_context, max_length=max_length)
    base_ll: list[list[float]] = []
    cand_ll: dict[str, list[list[float]]] = {n: [] for n in names}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names) * math.ceil(len(items) / chunk), desc="scan", unit="trial")
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        with surgery.record_block_inputs(model) if fast else ExitStack() as record:
            base_ll += choice_logliks(model, tokenizer, part, **kw)
        for name in names:
            with ExitStack() as stack:
                stack.enter_context(surgery.trial_drop(model, [name]))
                if fast:
                    pos = _scan_start(model, name)
                    stack.enter_context(surgery.run_from(model, pos, record[pos]))
                cand_ll[name] += choice_logliks(model, tokenizer, part, **kw)
            if bar is not None:
                bar.update(1)
        del record
    if bar is not None:
        bar.close()
    result = summarize(items, base_ll), {n: summarize(items, cand_ll[n]) for n in names}
    return (*result, base_ll, cand_ll) if return_logliks else result


def calibration_scores(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    eps: float = DEFAULT_EPS,
    **scan_kwargs,
) -> Scores:
    """Eq. 3: importance ``1 / (a_i + eps)``, a_i the calibration accuracy without i.

    ``details[name]`` holds ``acc`` (a_i), ``ll`` (mean correct-answer log-likelihood)
    and ``acc_norm``; ``info["base"]`` the undropped model's metrics.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (1/eps is the largest possible score), got {eps}")
    base, metrics = scan(model, tokenizer, items, **scan_kwargs)
    scores = {n: 1.0 / (m["acc"] + eps) for n, m in metrics.items()}
    return Scores(scores, "calibration", metrics, base=base, n=base["n"], eps=eps)


def loglik_scores(calib: Scores) -> Scores:
    """``loglik``: importance ``-ll_i``, the negated mean correct-answer log-likelihood
    without sub-layer i, from the same drop-one scan as :func:`calibration_scores`
    (a higher likelihood without i means i matters less)."""
    scores = {n: -m["ll"] for n, m in calib.details.items()}
    return Scores(scores, "loglik", calib.details, **calib.info)


# --- activations: Eq. 4 and the peers' cosines --------------------------------------------


def _sequences(tokenizer, items: Sequence[dict], use_context: bool) -> list[str]:
    """Calibration text: each item's prompt followed by its correct answer."""
    return [
        build_prompt(it, use_context) + continuation(it["choices"][int(it["answer"])])
        for it in items
    ]


def residual_statistics(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict],
    use_context: bool = True,
    batch_size: int = 8,
    max_length: int = 512,
) -> dict[str, dict[str, float]]:
    """Per remaining sub-layer, over all non-padding calibration tokens:

    * ``sq_norm``: sum of ``||c_t||^2``, c_t the sub-layer's addition to the stream;
    * ``tokens``: N, the number of tokens;
    * ``cos``: sum over tokens of ``cos(x_t, x_t + c_t)`` (x_t the stream entering it);
    * ``last_cos``: sum over sequences of that cosine at the last token;
    * ``sequences``: the number of sequences.
    """
    items = validate_items(items)
    fam = surgery.family_of(model)
    names = surgery.sublayers(model)
    blocks = dict(zip(surgery.block_ids(model), surgery.layer_list(model), strict=True))
    stats = {n: dict(sq_norm=0.0, tokens=0, cos=0.0, last_cos=0.0, sequences=0) for n in names}
    captured: dict[str, torch.Tensor] = {}

    def grab(key: str) -> Callable:
        def hook(_m, args, kwargs, out):
            captured[key] = (out[0] if isinstance(out, tuple) else out).detach().float()

        return hook

    def grab_in(key: str) -> Callable:
        def hook(_m, args, kwargs):
            captured[key] = (args[0] if args else kwargs["hidden_states"]).detach().float()

        return hook

    handles = []
    for bid, block in blocks.items():
        handles.append(block.register_forward_pre_hook(grab_in(f"{bid}.in"), with_kwargs=True))
        for kind in surgery.KINDS:
            if f"{bid}.{kind}" in stats:
                mod = getattr(block, fam.sublayer(kind).contribution)
                handles.append(mod.register_forward_hook(grab(f"{bid}.{kind}"), with_kwargs=True))
    texts = _sequences(tokenizer, items, use_context)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    padding_side="right",
                )
                model(**enc.to(device), use_cache=False)
                mask = enc["attention_mask"].bool()
                last = mask.sum(1) - 1
                rows = torch.arange(mask.shape[0])
                for bid in blocks:
                    x = captured[f"{bid}.in"]
                    for kind in surgery.KINDS:
                        name = f"{bid}.{kind}"
                        if name not in stats:
                            continue
                        c = captured[name]
                        c = c.reshape(x.shape) if c.numel() == x.numel() else c.expand_as(x)
                        y = x + c
                        cos = torch.nn.functional.cosine_similarity(x, y, dim=-1)
                        s = stats[name]
                        s["sq_norm"] += float((c.pow(2).sum(-1) * mask).sum())
                        s["tokens"] += int(mask.sum())
                        s["cos"] += float((cos * mask).sum())
                        s["last_cos"] += float(cos[rows, last].sum())
                        s["sequences"] += int(mask.shape[0])
                        x = y
                captured.clear()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stats


def activation_scores(model: PreTrainedModel, tokenizer, items: Sequence[dict], **kw) -> Scores:
    """Eq. 4: ``s_i = 1 - n_i / sum_j n_j`` with ``n_i = ||A_i||_F / sqrt(N)``."""
    stats = residual_statistics(model, tokenizer, items, **kw)
    norms = {n: math.sqrt(s["sq_norm"] / s["tokens"]) for n, s in stats.items()}
    total = sum(norms.values()) or 1.0
    scores = {n: 1.0 - v / total for n, v in norms.items()}
    return Scores(scores, "activation", {n: {"norm": v} for n, v in norms.items()})


def block_influence_scores(
    model: PreTrainedModel, tokenizer, items: Sequence[dict], **kw
) -> Scores:
    """ShortGPT's Block Influence at sub-layer level: mean ``1 - cos(x, x + c)`` per token."""
    stats = residual_statistics(model, tokenizer, items, **kw)
    scores = {n: 1.0 - s["cos"] / s["tokens"] for n, s in stats.items()}
    return Scores(scores, "block_influence", {n: {"bi": v} for n, v in scores.items()})


def angular_scores(model: PreTrainedModel, tokenizer, items: Sequence[dict], **kw) -> Scores:
    """Gromov et al.'s angular distance ``arccos(cos) / pi`` across each sub-layer, at the
    last token (n = one sub-layer); smaller distance, less important."""
    stats = residual_statistics(model, tokenizer, items, **kw)
    scores = {
        n: math.acos(max(-1.0, min(1.0, s["last_cos"] / s["sequences"]))) / math.pi
        for n, s in stats.items()
    }
    return Scores(scores, "angular", {n: {"angular": v} for n, v in scores.items()})


def angular_block_distances(
    model: PreTrainedModel, tokenizer, items: Sequence[dict], n: int = 1, use_context: bool = True
) -> dict[int, float]:
    """Gromov et al.: mean ``arccos(cos(h_l, h_{l+n})) / pi`` at the last token, for every
    start block l (original ids) of a window of n blocks; the smallest is pruned first."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    items = validate_items(items)
    texts = _sequences(tokenizer, items, use_context)
    enc = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True, use_cache=False)
    last = enc["attention_mask"].sum(1) - 1
    rows = torch.arange(len(texts))
    hs = [h[rows, last].float() for h in out.hidden_states]  # embeddings, then each block
    ids = surgery.block_ids(model)
    result = {}
    for i in range(len(ids) - n + 1):
        cos = torch.nn.functional.cosine_similarity(hs[i], hs[i + n], dim=-1).clamp(-1, 1)
        result[ids[i]] = float((torch.arccos(cos) / math.pi).mean())
    return result


# --- rule-based baselines (the paper's Table 3) ------------------------------------------


def rule_scores(model: PreTrainedModel, method: str, seed: int = 0) -> Scores:
    """``random`` (seeded), ``top`` (last sub-layers least important) or ``bottom``."""
    names = surgery.sublayers(model)
    if method == "random":
        rng = _random.Random(seed)
        values = list(range(len(names)))
        rng.shuffle(values)
        return Scores(dict(zip(names, map(float, values), strict=True)), method, seed=seed)
    if method == "top":
        return Scores({n: float(-i) for i, n in enumerate(names)}, method)
    if method == "bottom":
        return Scores({n: float(i) for i, n in enumerate(names)}, method)
    raise ValueError(f"unknown rule {method!r}; choose random, top or bottom")


def both_order(calib: Scores, act: Scores) -> list[str]:
    """'both': rank by calibration accuracy; equal a_i (same count of items right) are
    ordered by the activation score, then by position."""
    n = calib.info["n"]
    names = rank(act)  # activation order, positions breaking its ties
    act_pos = {name: i for i, name in enumerate(names)}
    return sorted(
        calib, key=lambda m: (-round(calib.details[m]["acc"] * n), act_pos[m], _position_key(m))
    )


def score(
    model: PreTrainedModel,
    tokenizer,
    items: Sequence[dict] | None,
    method: str = "both",
    seed: int = 0,
    eps: float = DEFAULT_EPS,
    use_context: bool = True,
    batch_size: int | None = None,
    progress: bool = False,
) -> Scores:
    """Importance of every remaining sub-layer by ``method`` (one of :data:`METHODS`).

    For ``both`` the returned importances are ranks (0 = least important), so
    :func:`rank` gives the 'both' order; ``details`` keeps a_i, ll and norms.
    """
    if method not in METHODS:
        raise ValueError(f"unknown score method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("random", "top", "bottom"):
        return rule_scores(model, method, seed)
    act_kw = dict(use_context=use_context)
    if method == "activation":
        return activation_scores(model, tokenizer, items, **act_kw)
    if method == "block_influence":
        return block_influence_scores(model, tokenizer, items, **act_kw)
    if method == "angular":
        return angular_scores(model, tokenizer, items, **act_kw)
    calib = calibration_scores(
        model,
        tokenizer,
        items,
        eps=eps,
        use_context=use_context,
        batch_size=batch_size,
        progress=progress,
    )
    if method == "calibration":
        return calib
    if method == "loglik":
        return loglik_scores(calib)
    act = activation_scores(model, tokenizer, items, **act_kw)
    order = both_order(calib, act)
    details = {n: {**calib.details[n], "norm": act.details[n]["norm"]} for n in calib}
    return Scores({n: float(i) for i, n in enumerate(order)}, "both", details, **calib.info)
