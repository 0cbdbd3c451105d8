"""Shared test settings: tiny-model tests run single-threaded (faster, and immune to a
busy machine); tests marked ``slow`` keep torch's default threads for the real model."""

from __future__ import annotations

import json

import pytest
import torch

from trimlab import data


@pytest.fixture(autouse=True)
def _threads(request):
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_domain(tmp_path_factory):
    """A registered 'bring your own domain' dataset of 90 arithmetic questions."""
    path = tmp_path_factory.mktemp("toy") / "toy.jsonl"
    rows = []
    for i in range(90):
        a, b = i % 9 + 1, i // 9 + 1
        right = a + b
        choices = [str(right), str(right + 1), str(right + 3)]
        rows.append(
            {
                "id": f"toy-{i}",
                "question": f"What is {a} plus {b}?",
                "choices": choices,
                "answer": 0,
                "context": None,
                "subject": None,
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data.register_dataset("toy_arith", path, domain="toy", overwrite=True)
    yield "toy"
    data.unregister_dataset("toy_arith")
