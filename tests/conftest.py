"""Shared test setup: fixed threads and seeds so results do not depend on the machine's load."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _fixed_threads_and_seed():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield
