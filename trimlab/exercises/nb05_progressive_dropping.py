"""Exercises of notebooks/05_progressive_dropping.ipynb: one round of the trim loop.

TrimLLM Sec. 3.2 drops, round by round, the least important sub-layers until the model
is as small as asked. ``drops_for_round`` picks a round's drops (checked against
:func:`trimlab.rank`); ``decoder_kept`` measures progress towards the target (checked
against :func:`trimlab.compression`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from trimlab import accounting, scoring, surgery
from trimlab.exercises.core import (
    DROP_CASES,
    Exercise,
    Wrong,
    call,
    checker,
    close,
    fresh,
    tiny_tokenizer,
)

# --- drops_for_round ------------------------------------------------------------------------


def _grade_drops_for_round(fn: Callable) -> tuple[bool, str]:
    rng = random.Random(5)
    names = [f"{b}.{k}" for b in range(5) for k in surgery.KINDS]
    for k in (1, 2, 3):
        values = [float(rng.randint(0, 4)) for _ in names]  # many ties: position decides
        scores = dict(zip(names, values))
        want = scoring.rank(scores)[:k]
        got = call(fn, dict(scores), k)
        if list(got) != want:
            raise Wrong(f"drop_rate={k}: you chose {list(got)}, expected {want} (in order)")
    return True, "you drop the drop_rate least important, ties going to the earlier sub-layer"


DROPS_FOR_ROUND = Exercise(
    name="drops_for_round",
    notebook="05_progressive_dropping",
    signature="drops_for_round(scores, drop_rate) -> list[str]",
    hint="trimlab.rank(scores) lists names from least to most important (ties by "
    "position); a round drops the first drop_rate of them",
    grader=_grade_drops_for_round,
)
check_drops_for_round = checker(DROPS_FOR_ROUND)

# --- decoder_kept ---------------------------------------------------------------------------


def _grade_decoder_kept(fn: Callable) -> tuple[bool, str]:
    for dropped, names in DROP_CASES:
        base = fresh("llama")
        sizes = accounting.sublayer_params(base)
        model = fresh("llama", tuple(dropped) + tuple(names))
        want = accounting.compression(model)["decoder_kept"]
        got = call(fn, dict(sizes), list(dropped) + list(names))
        if not close(got, want):
            raise Wrong(
                f"removing {list(dropped) + list(names)}: you gave {float(got):.4f}, "
                f"expected {want:.4f}"
            )
    return True, "your share matches trimlab.compression(model)['decoder_kept']"


DECODER_KEPT = Exercise(
    name="decoder_kept",
    notebook="05_progressive_dropping",
    signature="decoder_kept(sizes, removed) -> float",
    hint="sizes maps every sub-layer of the untrimmed model to its parameter count and "
    "together they are the decoder; kept = 1 - (sum over removed) / (sum over all)",
    grader=_grade_decoder_kept,
)
check_decoder_kept = checker(DECODER_KEPT)


# --- trim_loop: the whole method, in about 15 lines -----------------------------------------

_TOY = "exercise_toy"
_TOY_DATASET = "exercise_toy_arith"


def _toy_domain() -> str:
    """Register the toy arithmetic items as a domain (once per process)."""
    import json
    import tempfile
    from pathlib import Path

    from trimlab import data
    from trimlab.exercises.core import toy_items

    if _TOY_DATASET not in data.dataset_names():
        folder = Path(tempfile.mkdtemp(prefix="trimlab-exercise-"))
        rows = [{**it, "subject": None} for it in toy_items(90)]
        (folder / "toy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        data.register_dataset(_TOY_DATASET, folder / "toy.jsonl", domain=_TOY, overwrite=True)
    return _TOY


def _grade_trim_loop(fn: Callable) -> tuple[bool, str]:
    import torch

    from trimlab import TrimConfig, sparse, trim
    from trimlab.data import load_domain
    from trimlab.heal import AnswerCE, HealRound

    domain = _toy_domain()
    rounds, drop_rate = 3, 2
    cfg = TrimConfig.from_profile(
        "ci",
        score="loglik",
        drop_rate=drop_rate,
        steps_per_round=1,
        calib_items=6,
        batch_size=4,
        lr=1e-3,
        use_context=False,
        max_length=128,
    )
    ref = trim(fresh("llama"), tiny_tokenizer(), domain, rounds * drop_rate, cfg, log=None).history
    train = load_domain(domain, "train")

    def calib_sample(k: int) -> list[dict]:
        return load_domain(domain, "calib", n=cfg.calib_items, seed=cfg.seed + 1000 + k)

    def heal(model, k: int) -> None:
        sparse.freeze(model, ref.trainable, cfg.granularity, cfg.train_embeddings)
        if not sparse.trainable_units(model, ref.trainable, cfg.granularity):
            return  # every trainable unit was dropped: trim trains nothing either
        where = HealRound(
            k, (k - 1) * cfg.steps_per_round, cfg.steps_per_round * ref.planned_rounds
        )
        AnswerCE()(model, tiny_tokenizer(), train, cfg, where)

    model = fresh("llama")
    torch.manual_seed(0)
    got = call(fn, model, tiny_tokenizer(), rounds, drop_rate, calib_sample, heal)
    want = ref.drop_sequence
    if list(got) != want:
        raise Wrong(f"trimlab.trim dropped {want} (in this order), your loop {list(got)}")
    if surgery.dropped(model) != want:
        raise Wrong("return the names you dropped, and drop them from the model (trimlab.drop)")
    return True, f"your loop drops what trimlab.trim drops: {', '.join(want)}"


TRIM_LOOP = Exercise(
    name="trim_loop",
    notebook="05_progressive_dropping",
    signature="trim_loop(model, tokenizer, rounds, drop_rate, calib_sample, heal) -> list[str]",
    hint="for k = 1 .. rounds: heal(model, k); score the remaining sub-layers on "
    "calib_sample(k) with trimlab.score(model, tokenizer, items, method='loglik', "
    "use_context=False); drop the drop_rate first names of trimlab.rank(scores) with "
    "trimlab.drop; collect them",
    grader=_grade_trim_loop,
)
check_trim_loop = checker(TRIM_LOOP)

# --- kd_loss: healing by distillation ---------------------------------------------------------


def _grade_kd_loss(fn: Callable) -> tuple[bool, str]:
    import torch

    from trimlab.distill import kl_to_teacher

    gen = torch.Generator().manual_seed(0)
    for t in (1.0, 2.0, 0.5):
        student = torch.randn(6, 11, generator=gen)
        teacher = torch.randn(6, 11, generator=gen) * 2
        want = float(kl_to_teacher(student, teacher, temperature=t))
        got = call(fn, student.clone(), teacher.clone(), t)
        got = float(got)
        if close(got, want, 1e-4):
            continue
        backwards = float(kl_to_teacher(teacher, student, temperature=t))
        if close(got, backwards, 1e-4):
            raise Wrong(
                f"T={t}: that is KL(student || teacher); distillation uses KL(teacher || student)"
            )
        if close(got * t * t, want, 1e-4):
            raise Wrong(f"T={t}: right up to a factor T^2 = {t * t}: scale the KL by T^2")
        raise Wrong(f"T={t}: expected {want:.6f}, got {got:.6f}")
    return True, "T^2 KL(teacher || student) at temperature T, averaged over positions"


KD_LOSS = Exercise(
    name="kd_loss",
    notebook="05_progressive_dropping",
    signature="kd_loss(student_logits, teacher_logits, temperature) -> tensor",
    hint="p = softmax(teacher / T), log q = log_softmax(student / T) over the last axis; "
    "KL per position = sum p * (log p - log q); return T**2 times its mean over positions",
    grader=_grade_kd_loss,
)
check_kd_loss = checker(KD_LOSS)

CHAPTER_EXERCISES = (DROPS_FOR_ROUND, DECODER_KEPT, TRIM_LOOP, KD_LOSS)
