"""Shared test settings: float64 numerics, one torch thread per xdist worker, fixed seeds, leak detection.

tracemalloc is on (6 frames, about 3x slower; ``BOLTZFLOW_TRACEMALLOC=0`` turns it off while iterating, a
number sets the depth), so a ``ResourceWarning`` for an unclosed file names the line that opened it, and every
test ends with a garbage collection, so such a warning (an error under ``filterwarnings = error``) fails the
test that leaked and not whichever test happens to run when the collector comes.
"""

import gc
import os
import tracemalloc

import numpy as np
import pytest
import torch

_depth = int(os.environ.get("BOLTZFLOW_TRACEMALLOC", "6"))
if _depth > 0:
    tracemalloc.start(_depth)
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    np.random.seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
    gc.collect()
