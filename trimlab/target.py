"""How far to trim: the target of a run, and how many rounds it should take.

TrimLLM (Sec. 3.2) drops sub-layers until the model reaches a size. A target is

* an int, ``12``: **12 sub-layers removed from the original model, in total** (drops made
  before this run count; a model that already has 12 drops has met it), or
* a share kept, ``"50%"`` of the decoder-layer parameters (the paper's "P%") or
  ``"60%mem"`` of all parameter bytes, both relative to the untrimmed model.

A target that is already met, or that no sequence of drops can meet, is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from transformers import PreTrainedModel

from trimlab import accounting, families, surgery


@dataclass(frozen=True)
class Target:
    """``count`` sub-layers removed in total, or a share ``kept`` of the decoder-layer
    parameters (``of="decoder"``) or of all parameter bytes (``of="bytes"``)."""

    count: int | None = None
    kept: float | None = None
    of: str = "decoder"  # or "bytes"

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.kept * 100:g}%" + ("mem" if self.of == "bytes" else "")

    def met(self, model: PreTrainedModel, removed: int | None = None) -> bool:
        """Whether ``model`` meets the target (``removed``: drops so far, in total)."""
        if self.count is not None:
            done = len(surgery.dropped(model)) if removed is None else removed
            return self.met_by(done, 1.0, 1.0)
        comp = accounting.compression(model)
        return self.met_by(0, comp["decoder_kept"], comp["bytes_kept"])

    def met_by(self, removed: int, decoder_kept: float, bytes_kept: float) -> bool:
        """Whether a model with ``removed`` drops in total and these kept shares (a
        round's record in ``history.json``) meets the target."""
        if self.count is not None:
            return removed >= self.count
        share = decoder_kept if self.of == "decoder" else bytes_kept
        return share <= self.kept + 1e-9


def parse_target(target: int | str | Target) -> Target:
    """``12`` -> 12 sub-layers removed in total; ``"50%"`` -> keep 50% of decoder-layer
    parameters; ``"60%mem"`` -> keep 60% of all parameter bytes."""
    if isinstance(target, Target):
        return target
    if isinstance(target, bool):
        raise ValueError(f"invalid target {target!r}")
    if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
        count = int(target)
        if count < 1:
            raise ValueError(f"target must remove at least one sub-layer, got {target!r}")
        return Target(count=count)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*(mem)?\s*", str(target))
    if m is None:
        raise ValueError(f"invalid target {target!r}; use an int (sub-layers), 'P%' or 'P%mem'")
    kept = float(m.group(1)) / 100
    if not 0 < kept < 1:
        raise ValueError(f"target {target!r}: the share kept must be between 0% and 100%")
    return Target(kept=kept, of="bytes" if m.group(2) else "decoder")


def check_target(model: PreTrainedModel, target: Target) -> None:
    """ValueError if ``target`` is already met or cannot be met by dropping sub-layers."""
    left = len(families.sublayers(model))
    done = len(surgery.dropped(model))
    if target.count is not None:
        if target.count <= done:
            raise ValueError(
                f"target {target} is already met: this model has {done} sub-layers removed "
                "(an int target counts every removal from the original model)"
            )
        if target.count > done + left:
            raise ValueError(f"target {target}: {done} removed and only {left} sub-layers remain")
        return
    if target.met(model):
        raise ValueError(f"target {target} is already met by this model")
    if target.of == "bytes":
        base = accounting.base_sizes(model)
        floor = (base["bytes"] - accounting.param_bytes(families.layer_list(model))) / base["bytes"]
        if floor > target.kept:
            raise ValueError(
                f"target {target} is impossible: embeddings, head and norms alone are "
                f"{floor:.1%} of the bytes"
            )


def drops_needed(model: PreTrainedModel, target: Target) -> int:
    """How many more sub-layers the target needs: exact for an int target; for a share,
    the count if each removed sub-layer had the mean size of those that remain."""
    if target.count is not None:
        return max(0, target.count - len(surgery.dropped(model)))
    sizes = accounting.sublayer_params(model)
    if not sizes or target.met(model):
        return 0
    base = accounting.base_sizes(model)
    if target.of == "decoder":
        excess = accounting.decoder_param_count(model) - target.kept * base["decoder_params"]
        per = sum(sizes.values()) / len(sizes)
    else:
        excess = accounting.param_bytes(model) - target.kept * base["bytes"]
        per = accounting.param_bytes(families.layer_list(model)) / len(sizes)
    return min(len(sizes), max(1, math.ceil(excess / per - 1e-9)))


def planned_rounds(model: PreTrainedModel, target: Target, drop_rate: int) -> int:
    """Rounds a run should take from ``model`` to ``target`` at ``drop_rate`` drops each:
    what the LR schedule is planned over, so that it reaches zero when the run ends."""
    return max(1, math.ceil(drops_needed(model, target) / drop_rate))
