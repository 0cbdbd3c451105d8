"""Run profiles: the one place that turns ``TRIMLAB_PROFILE`` into concrete settings.

Every later part of trimlab (the demo, scoring, trimming, benchmarks, notebooks) takes
its model, item counts, steps, batch sizes and context use from :func:`get_profile`.

* ``ci``  -- tiny random model, a handful of items: keeps pytest fast.
* ``lab`` -- the real SmolLM2-135M on a few short items, one thread, fp32: the outputs
  committed in the lab notebooks, so that a student sees a real model's numbers, and all
  nine notebooks still run under ``pytest --nbval`` in CI within 30 minutes.
* ``cpu`` -- the reference run on the reference machine (2-core CPU, 24 GB):
  the real SmolLM2-135M, minutes to an hour per experiment.
* ``gpu`` -- paper-scale settings for labs with a GPU.

When ``TRIMLAB_PROFILE`` is unset the profile is ``gpu`` if CUDA is available, else ``cpu``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

PROFILE_ENV = "TRIMLAB_PROFILE"
PROFILE_NAMES = ("ci", "lab", "cpu", "gpu")


@dataclass(frozen=True)
class Profile:
    """Settings shared by every experiment in one profile."""

    name: str
    model: str
    """Model name for :func:`trimlab.load_model`."""
    eval_items: int
    """Test items per dataset for evaluation tables (``None`` would mean all)."""
    calib_items: int
    """Calibration items per scoring pass (Eq. 3 and Eq. 4)."""
    train_steps_per_round: int
    """Optimizer steps between two drops (one 'epoch' in the paper's language)."""
    batch_size: int
    """Sequences per evaluation / training batch."""
    use_context: bool
    """Whether prompts carry the support paragraph (SciQ, PubMedQA)."""
    max_length: int
    """Token budget per sequence; longer prompts are truncated from the left."""
    drop_rate: int = 1
    """Sub-layers removed per round (k in the paper; 2 is 'adaptive dropping')."""
    dtype: str = "fp32"
    """Compute dtype: ``fp32``, ``bf16`` or ``auto`` (bf16 where the hardware has fast
    bf16). ``ci`` and ``lab`` pin fp32, so that stored notebook outputs compare exactly."""
    scan_every: int = 1
    """Live drop-one scans in the notebooks cover every ``scan_every``-th sub-layer
    (``trimlab.sublayers(model)[::scan_every]``): a scan of all 60 sub-layers of
    SmolLM2-135M costs minutes on one CPU thread."""
    select_score: str = "both"
    """How a run chooses its trainable set (``TrimConfig.select_score``)."""
    scan_candidates: int | None = None
    """Sub-layers a run re-scans per round (``TrimConfig.scan_candidates``; None: all)."""
    threads: int | None = None
    """torch threads the notebooks pin (``None``: torch's default). ``ci`` and ``lab`` pin
    one, so that reductions run in the same order and stored outputs repeat exactly."""

    def replace(self, **changes: object) -> Profile:
        """A copy with some fields changed (profiles themselves are immutable)."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        model="tiny-llama",
        eval_items=24,
        calib_items=16,
        train_steps_per_round=2,
        batch_size=8,
        use_context=False,
        max_length=512,
        threads=1,
    ),
    # The lab notebooks: SmolLM2-135M on closed-book items (22 tokens on average), 16
    # calibration items, 2 steps per round, 2 sub-layers per round, one thread; live
    # scans over every fifth sub-layer; runs choose the trainable set by one `loglik`
    # drop-one scan, which also ranks the candidates, and re-scan 6 of them per round.
    "lab": Profile(
        name="lab",
        model="smollm2-135m",
        eval_items=64,
        calib_items=16,
        train_steps_per_round=2,
        batch_size=8,
        use_context=False,
        max_length=256,
        drop_rate=2,
        scan_every=5,
        select_score="loglik",
        scan_candidates=6,
        threads=1,
    ),
    # The reference run on a 2-core CPU: no support paragraphs (short prompts), a
    # 32-item calibration sample, 10 steps of batch 8 per round and 2 sub-layers per
    # round, so that trimming SmolLM2-135M to 50% fits in about an hour.
    "cpu": Profile(
        name="cpu",
        model="smollm2-135m",
        eval_items=300,
        calib_items=32,
        train_steps_per_round=10,
        batch_size=8,
        use_context=False,
        max_length=256,
        drop_rate=2,
        dtype="auto",
    ),
    "gpu": Profile(
        name="gpu",
        model="smollm2-135m",
        eval_items=1000,
        calib_items=200,
        train_steps_per_round=200,
        batch_size=32,
        use_context=True,
        max_length=512,
        dtype="auto",
    ),
}


def default_profile_name() -> str:
    """``gpu`` when CUDA is available, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """The active profile: ``name`` if given, else ``$TRIMLAB_PROFILE``, else the default.

    Raises:
        ValueError: for a name that is not one of ``ci``, ``lab``, ``cpu``, ``gpu``.
    """
    chosen = name or os.environ.get(PROFILE_ENV) or default_profile_name()
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"unknown profile {chosen!r} (from {'argument' if name else PROFILE_ENV}); "
            f"choose one of {', '.join(PROFILE_NAMES)}"
        )
    return PROFILES[chosen]
