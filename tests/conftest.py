"""Shared test settings.

* Tiny-model tests run single-threaded (faster, and immune to a busy machine); tests
  marked ``slow`` keep torch's default threads for the real model.
* A deprecation message from the transformers logger fails the test. transformers
  announces some renames (``past_key_values`` -> ``cache`` in 5.24) through
  ``logger.warning_once``, which the ``warnings`` filters in ``pyproject.toml`` never see.
"""

from __future__ import annotations

import json
import logging

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


class _Deprecations(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "deprecat" in text.lower():
            self.messages.append(f"{record.name}: {text}")


@pytest.fixture(autouse=True)
def _no_transformers_deprecations():
    """Fail any test during which the transformers logger emits a deprecation message."""
    # warning_once is an lru_cache on logging.Logger: clear it, or a message already
    # printed by an earlier test would be silent here.
    once = getattr(logging.Logger, "warning_once", None)
    if hasattr(once, "cache_clear"):
        once.cache_clear()
    handler = _Deprecations()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        pytest.fail("transformers logged a deprecation: " + " | ".join(handler.messages))


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
