"""Small helpers shared by the paper reproductions."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def provenance(command: list[str] | None, started: float) -> dict[str, Any]:
    """Versions, machine and timing of a run."""
    import matplotlib
    import ot

    from boltzflow import __version__

    return {
        "command": " ".join(command) if command else None,
        "wall_seconds": round(time.time() - started, 1),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "boltzflow": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pot": ot.__version__,
        "matplotlib": matplotlib.__version__,
        "machine": f"{platform.machine()}, {cpu_model()}, torch threads {torch.get_num_threads()}",
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt(value: float | None, digits: int = 3) -> str:
    """Compact number formatting for markdown tables."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2)
