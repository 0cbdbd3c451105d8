"""Where a run spends its budget: which sub-layers to re-score, and how to rank them.

TrimLLM re-scores every remaining sub-layer after every drop (Sec. 3.2), because
drop-one sensitivities do not add up. The drop-one scan is the expensive part of a
round (one evaluation of the calibration sample per candidate), so trimlab offers two
levers on top of the paper's loop:

* :func:`candidates`: re-scan only the ``n`` sub-layers that looked least important at
  their latest measurement (``TrimConfig.scan_candidates``; round 1 goes by the initial
  scores of the sparse-update choice). The others keep their older rank and are not
  dropped this round. Against a full re-scan
  (the per-round scores of a full-scan run are exactly the counterfactual), the loss this
  costs is measured by :func:`preselection_regret`.
* :func:`cost_aware`: rank by log-likelihood lost per decoder parameter removed
  (``TrimConfig.cost_aware``). The paper's A.5 hints at it: an MLP frees three times an
  attention's parameters (in SmolLM2), so it is worth dropping at up to three times the
  damage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trimlab import families


def _position(name: str) -> tuple[int, int]:
    block, kind = families.parse_name(name)
    return block, families.KINDS.index(kind)


def ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """Each name's rank in ``scores``, 0 = least important (ties: forward position)."""
    order = sorted(scores, key=lambda x: (scores[x], _position(x)))
    return {x: i for i, x in enumerate(order)}


def latest_ranks(rounds: Sequence[Mapping[str, float]]) -> dict[str, int]:
    """Each name's rank at its latest measurement (later rounds win). Ranks, not the
    scores themselves, so that rounds scored on different scales (the initial
    ``both`` ranking, a round's ``loglik``) can be merged."""
    latest: dict[str, int] = {}
    for scores in rounds:
        latest.update(ranks(scores))
    return latest


DROP_ONE = ("calibration", "loglik", "both")
"""The drop-one scans: each measures what the model loses without a sub-layer, so the
order one of them measured can pre-select the candidates another re-scans."""


def preselects(initial_method: str, score: str) -> bool:
    """Whether a run's initial scores (``select_score``) may pick the first round's
    candidates for ``score``: the same method, or two drop-one scans. A proxy such as the
    activation norm of Eq. 4 may not: it ranks the high-norm late sub-layers least
    important, whose removal SmolLM2-135M loses most to (the lab profile's live run with
    that pre-selection fell to chance in two rounds), so round 1 then scans them all."""
    return initial_method == score or (initial_method in DROP_ONE and score in DROP_ONE)


def candidates(
    rounds: Sequence[Mapping[str, float]], remaining: Sequence[str], n: int | None
) -> list[str] | None:
    """The ``n`` names of ``remaining`` with the lowest latest rank in ``rounds`` (the
    scores of earlier measurements, oldest first: the initial scores, then each round's),
    in forward order. Names never measured are always included. ``None`` (scan all)
    when ``n`` is None, when nothing was measured before, or when ``n`` covers every
    remaining name. A name not re-scanned keeps its older rank, so it rises to the
    candidates as the ones ahead of it are dropped."""
    if n is None or not rounds or n >= len(remaining):
        return None
    latest = latest_ranks(rounds)
    never = [x for x in remaining if x not in latest]
    seen = sorted((x for x in remaining if x in latest), key=lambda x: (latest[x], _position(x)))
    return sorted(never + seen[: max(0, n - len(never))], key=_position)


def cost_aware(
    base_ll: float, lls: Mapping[str, float], params: Mapping[str, int]
) -> dict[str, float]:
    """Importance per parameter: ``(base_ll - ll_i) / params_i``, the mean correct-answer
    log-likelihood lost without sub-layer i, per decoder parameter it holds (a gain
    gives a negative importance: dropped first)."""
    missing = sorted(set(lls) - set(params))
    if missing:
        raise ValueError(f"no parameter count for {missing[:3]}")
    return {n: (base_ll - ll) / max(1, params[n]) for n, ll in lls.items()}


def preselection_regret(
    initial: Mapping[str, float], rounds: Sequence[Mapping], n: int
) -> list[dict]:
    """How much re-scanning only ``n`` candidates would have cost a full-scan run.

    ``initial`` is the run's ``initial_scores``; ``rounds`` its round records
    (``scores`` over every remaining sub-layer, ``dropped``). Round k's full scores are
    what a full re-scan measures; the candidates come from the measurements before it.
    Per round: whether the chosen names were among the candidates, and the regret, the
    mean importance of the best candidates minus that of the names the full scan chose
    (0 when they agree), in the score's own units."""
    out = []
    history: list[Mapping[str, float]] = [initial] if initial else []
    for rnd in rounds:
        scores, chosen = rnd["scores"], rnd["dropped"]
        cand = candidates(history, list(scores), n)
        pool = list(scores) if cand is None else cand
        best = sorted(scores[x] for x in pool)[: len(chosen)]
        full = sorted(scores[x] for x in scores)[: len(chosen)]
        out.append(
            {
                "round": rnd.get("round"),
                "hit": all(x in pool for x in chosen),
                "regret": (sum(best) - sum(full)) / max(1, len(chosen)),
            }
        )
        history.append(scores)
    return out
