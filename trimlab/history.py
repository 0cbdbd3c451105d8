"""The record of a TrimLLM run: its settings and one row per round (``history.json``).

Every round of progressive dropping (Sec. 3.2) is recorded: what was dropped, the
importance of every remaining sub-layer (Eq. 3/4), the calibration accuracy before and
after the drop, the training loss and the sizes. Files written by trimlab 0.1 load too:
fields added since then take their defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from transformers import PreTrainedModel

from trimlab import accounting, families
from trimlab.checkpoint import write_json

HISTORY_FILE = "history.json"


@dataclass
class Round:
    """One round of the run, as recorded in ``history.json``."""

    round: int
    dropped: list[str]
    """Names removed at the end of this round."""
    scores: dict[str, float]
    """Importance of every sub-layer remaining before the drop."""
    calib: dict
    """Calibration metrics before the drop (``acc, acc_norm, ll, n``)."""
    calib_after: dict | None
    """Calibration accuracy and ll with this round's drop applied (None if unmeasured)."""
    train_loss: float | None
    steps: int
    seconds: float
    """Wall time of the round: healing, scoring and dropping."""
    train_seconds: float
    params: int
    bytes: int
    decoder_kept: float
    bytes_kept: float
    sublayers_left: int
    refused: list[str] = field(default_factory=list)
    """Names chosen but not dropped because the drop would break ``accuracy_floor``."""
    lr: float | None = None
    """Learning rate at the last step of this round's healing."""
    heal: dict = field(default_factory=dict)
    """What the heal step reported besides the above (``kd``: the loss parts, the size of
    the teacher cache)."""


@dataclass
class History:
    """Settings, sparse-update choice and rounds of one ``trim`` run."""

    settings: dict
    trainable: list[str] = field(default_factory=list)
    initial_scores: dict[str, float] = field(default_factory=dict)
    initial: dict = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    stopped: str | None = None
    planned_rounds: int | None = None
    """Rounds the LR schedule is planned over (re-planned if the run needs more)."""
    final_heal: dict | None = None
    """The final heal phase after the last drop (``final_steps``): its report."""

    @property
    def drop_sequence(self) -> list[str]:
        return [n for r in self.rounds for n in r.dropped]

    @property
    def steps_done(self) -> int:
        final = (self.final_heal or {}).get("steps", 0)
        return sum(r.steps for r in self.rounds) + final

    def to_json(self, path: str | os.PathLike) -> None:
        """Write atomically."""
        write_json(path, asdict(self))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        known = {f.name for f in fields(Round)}
        data = dict(data)
        data["rounds"] = [
            Round(**{k: v for k, v in r.items() if k in known}) for r in data["rounds"]
        ]
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> History:
        return cls.from_dict(json.loads(Path(path).read_text()))


def round_record(model: PreTrainedModel, **values: object) -> Round:
    """A :class:`Round` with the model's current sizes filled in."""
    comp, sizes = accounting.compression(model), accounting.sizes(model)
    return Round(
        params=sizes["params"],
        bytes=sizes["bytes"],
        decoder_kept=comp["decoder_kept"],
        bytes_kept=comp["bytes_kept"],
        sublayers_left=len(families.sublayers(model)),
        **values,
    )
