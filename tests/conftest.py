"""Shared test settings: tiny-model tests run single-threaded (faster, and immune to a
busy machine); tests marked ``slow`` keep torch's default threads for the real model."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads(request):
    if request.node.get_closest_marker("slow"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
