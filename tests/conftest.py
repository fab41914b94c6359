"""Shared test settings: float64 numerics, one torch thread per xdist worker, fixed seeds."""

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    np.random.seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
