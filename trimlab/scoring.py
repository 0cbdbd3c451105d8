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

The activation-based methods read the residual stream through :mod:`trimlab.activations`
(``residual_statistics`` and ``angular_block_distances`` are re-exported here). Every
pass truncates its inputs to ``max_length`` tokens the way :func:`trimlab.evaluate.evaluate`
does, so calibration and test evaluation read the same tokens.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Sequence
from contextlib import ExitStack

from transformers import PreTrainedModel

from trimlab import families, surgery
from trimlab.activations import angular_block_distances as angular_block_distances
from trimlab.activations import residual_statistics
from trimlab.evaluate import choice_logliks, summarize, validate_items

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
    block, kind = families.parse_name(name)
    return block, families.KINDS.index(kind)


# --- calibration (Eq. 3) ---------------------------------------------------------------


def _scan_start(model: PreTrainedModel, name: str) -> int:
    """Lowest block position that must run when ``name`` is trial-dropped: its own block,
    or lower if no attention would run above it (the cache needs one real attention)."""
    position = families.block_ids(model).index(families.parse_name(name)[0])
    fam = families.family_of(model)
    present = [families.present(b, fam.attn) for b in families.layer_list(model)]
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
    names = list(names) if names is not None else families.sublayers(model)
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


# --- activations: Eq. 4 and the peers' cosines (measured in trimlab.activations) ----------


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


# --- rule-based baselines (the paper's Table 3) ------------------------------------------


def rule_scores(model: PreTrainedModel, method: str, seed: int = 0) -> Scores:
    """``random`` (seeded), ``top`` (last sub-layers least important) or ``bottom``."""
    names = families.sublayers(model)
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
    max_length: int | None = None,
    names: Sequence[str] | None = None,
) -> Scores:
    """Importance of every remaining sub-layer (or of ``names`` only) by ``method`` (one
    of :data:`METHODS`). The drop-one scans (``calibration``, ``loglik``, ``both``) then
    trial-drop ``names`` only; the other methods measure all and keep ``names``.

    ``batch_size`` and ``max_length`` (the token budget per input, truncated from the
    left as :func:`trimlab.evaluate.evaluate` does) apply to every pass: the drop-one
    scan and the activation pass. ``None`` takes the profile's batch size and the model's
    context length, evaluate's defaults; pass the profile's ``max_length`` so that
    calibration reads what test evaluation and fine-tuning read.

    For ``both`` the returned importances are ranks (0 = least important), so
    :func:`rank` gives the 'both' order; ``details`` keeps a_i, ll and norms.
    """
    if method not in METHODS:
        raise ValueError(f"unknown score method {method!r}; choose one of {', '.join(METHODS)}")
    if names is not None:
        names = surgery.check_names(model, names)
    if method in ("random", "top", "bottom"):
        return _keep(rule_scores(model, method, seed), names)
    act_kw = dict(use_context=use_context, batch_size=batch_size, max_length=max_length)
    if method == "activation":
        return _keep(activation_scores(model, tokenizer, items, **act_kw), names)
    if method == "block_influence":
        return _keep(block_influence_scores(model, tokenizer, items, **act_kw), names)
    if method == "angular":
        return _keep(angular_scores(model, tokenizer, items, **act_kw), names)
    calib = calibration_scores(
        model,
        tokenizer,
        items,
        eps=eps,
        use_context=use_context,
        batch_size=batch_size,
        progress=progress,
        max_length=max_length,
        names=names,
    )
    if method == "calibration":
        return calib
    if method == "loglik":
        return loglik_scores(calib)
    act = activation_scores(model, tokenizer, items, **act_kw)
    order = both_order(calib, act)
    details = {n: {**calib.details[n], "norm": act.details[n]["norm"]} for n in calib}
    return Scores({n: float(i) for i, n in enumerate(order)}, "both", details, **calib.info)


def _keep(scores: Scores, names: Sequence[str] | None) -> Scores:
    """``scores`` restricted to ``names`` (all when None)."""
    if names is None:
        return scores
    kept = {n: scores[n] for n in names}
    return Scores(
        kept,
        scores.method,
        {n: scores.details[n] for n in names if n in scores.details},
        **scores.info,
    )
