"""Shared test settings: float64 numerics, one torch thread per xdist worker, fixed seeds, leak detection.

Every test ends with a garbage collection, so a ``ResourceWarning`` for an unclosed file (an error under
``filterwarnings = error``, raised through pytest's unraisable-exception hook) fails the test that leaked and not
whichever test happens to run when the collector comes (``tests/test_suite_guards.py`` checks that it does).
The warning names the leaked file. To also get the line that opened it, run with tracemalloc on:
``BOLTZFLOW_TRACEMALLOC=6 pytest ...`` (the frame depth). It is off by default because it made the suite about
20x slower on torch-heavy tests (142 s against 6.3 s for two recipe tests, measured on 2026-12-01).
"""

import gc
import os
import tracemalloc

import numpy as np
import pytest
import torch

_depth = int(os.environ.get("BOLTZFLOW_TRACEMALLOC", "0"))
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
