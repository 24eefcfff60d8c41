"""Optimizer tests run single-threaded (bit-exact comparisons, shared 2-core machine)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
