"""Run a tiny trim and print its drop sequence; used by tests/test_distributed.py.

    python tests/helpers/dist_trim.py OUT_JSON            # one process
    torchrun --nproc_per_node 2 tests/helpers/dist_trim.py OUT_JSON   # two (gloo)

The tiny model's sub-layers get well-separated output scales, so the activation ranking
does not depend on the last bits of floating-point sums, which gloo orders differently.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from trimlab import data, surgery, trim
from trimlab.tiny import tiny_model


def main(out: str) -> None:
    torch.set_num_threads(1)
    tmp = Path(tempfile.gettempdir()) / f"trimlab-dist-{os.getppid()}"
    tmp.mkdir(exist_ok=True)
    rows = [
        {
            "id": f"t{i}",
            "question": f"What is {i % 9 + 1} plus {i // 9 + 1}?",
            "choices": [str(i % 9 + i // 9 + 2), str(i % 9 + i // 9 + 3)],
            "answer": 0,
        }
        for i in range(60)
    ]
    path = tmp / "toy.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data.register_dataset("toy_dist", path, domain="toydist", overwrite=True)
    model, tok = tiny_model("llama", seed=0)
    with torch.no_grad():  # well-separated contributions: scale output projections 1..8
        for i, name in enumerate(surgery.sublayers(model)):
            block, sub = surgery.locate(model, name)
            proj = getattr(block, sub.out)
            proj = proj.o_proj if hasattr(proj, "o_proj") else proj.down_proj
            proj.weight.mul_(1.0 + 1.5 * ((i * 5) % 8))
    res = trim(
        model,
        tok,
        "toydist",
        4,
        score="activation",
        drop_rate=1,
        steps_per_round=2,
        calib_items=8,
        batch_size=4,
        lr=1e-4,
        use_context=False,
        max_length=64,
        profile="ci",
        log=None,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(
            json.dumps(
                {
                    "drops": res.history.drop_sequence,
                    "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                    "distributed": torch.distributed.is_initialized()
                    and torch.distributed.get_backend() == "gloo"
                    and torch.distributed.get_world_size() == 2,
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1])
