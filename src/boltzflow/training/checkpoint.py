"""Checkpoints: plain dicts holding everything needed to rebuild, resume or sample a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.flows.spec import build_flow
from boltzflow.io import save_torch

FORMAT = "boltzflow-checkpoint-v1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically; ``payload`` must contain ``flow_spec`` and ``model``."""
    save_torch(path, {"format": FORMAT, **payload})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint.

    Raises:
        BoltzflowError: missing, unreadable, or not a boltzflow checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BoltzflowError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated/corrupt files raise many different errors
        kind = type(err).__name__
        raise BoltzflowError(f"cannot read checkpoint {path}: {kind} (file corrupt or truncated?)") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "flow_spec" not in ckpt or "model" not in ckpt:
        raise BoltzflowError(f"{path} is not a boltzflow checkpoint (expected format {FORMAT})")
    return ckpt


def load_flow(path: str | Path, which: str = "best") -> tuple[Flow, dict[str, Any]]:
    """Rebuild the flow stored in a checkpoint.

    Args:
        path: checkpoint file.
        which: "best" (best validation weights, the default) or "last".

    Returns:
        ``(flow in eval mode, checkpoint dict)``.
    """
    ckpt = read_checkpoint(path)
    flow = build_flow(ckpt["flow_spec"])
    state = ckpt.get("best_model") if which == "best" and ckpt.get("best_model") is not None else ckpt["model"]
    try:
        flow.load_state_dict(state)
    except RuntimeError as err:
        raise BoltzflowError(f"checkpoint {path}: weights do not match its flow spec ({err})") from None
    return flow.eval(), ckpt
