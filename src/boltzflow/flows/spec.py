"""Flows described by plain dicts, so a checkpoint can rebuild the exact architecture.

A spec is ``{"kind": name, "config": {...}, "loc": [...] | None, "scale": [...] | None}``. Adding a flow family is
one builder function and one line in ``BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from boltzflow.flows.flow import Flow
from boltzflow.flows.realnvp import RealNVPConfig, realnvp


def _build_realnvp(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    return realnvp(RealNVPConfig(**config), _tensor(loc), _tensor(scale))


def _build_spline(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    from boltzflow.flows.spline_coupling import SplineFlowConfig, spline_flow

    return spline_flow(SplineFlowConfig(**config), _tensor(loc), _tensor(scale))


def _build_circular_spline(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    from boltzflow.flows.torus import circular_spline_flow

    return circular_spline_flow(**config)


def _build_ic_spline(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    from boltzflow.flows.ic_flow import build_ic_spline

    return build_ic_spline(config, loc, scale)


def _build_ic_smooth(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    from boltzflow.flows.ic_flow import build_ic_smooth

    return build_ic_smooth(config, loc, scale)


def _build_ic_realnvp(config: dict[str, Any], loc: Any, scale: Any) -> Flow:
    from boltzflow.flows.ic_flow import build_ic_realnvp

    return build_ic_realnvp(config, loc, scale)


BUILDERS: dict[str, Callable[[dict[str, Any], Any, Any], Flow]] = {
    "realnvp": _build_realnvp,
    "spline": _build_spline,
    "circular_spline": _build_circular_spline,
    "ic_spline": _build_ic_spline,
    "ic_smooth": _build_ic_smooth,
    "ic_realnvp": _build_ic_realnvp,
}


def _tensor(v: Any) -> torch.Tensor | None:
    return None if v is None else torch.as_tensor(v, dtype=torch.get_default_dtype())


def realnvp_spec(cfg: RealNVPConfig, loc: Any = None, scale: Any = None) -> dict[str, Any]:
    """Spec of a RealNVP flow (optionally with a fixed de-standardisation)."""
    return vector_spec("realnvp", cfg, loc, scale)


def vector_spec(kind: str, cfg: Any, loc: Any = None, scale: Any = None) -> dict[str, Any]:
    """Spec of a flow on vectors whose builder takes ``(config dataclass, loc, scale)``: RealNVP or spline."""
    as_list = lambda v: None if v is None else [float(a) for a in torch.as_tensor(v).flatten()]  # noqa: E731
    return {"kind": kind, "config": asdict(cfg), "loc": as_list(loc), "scale": as_list(scale)}


def build_flow(spec: dict[str, Any]) -> Flow:
    """Rebuild a flow from its spec (parameters freshly initialised; load a state dict afterwards)."""
    kind = spec.get("kind")
    if kind not in BUILDERS:
        raise ValueError(f"unknown flow kind {kind!r}; known kinds: {sorted(BUILDERS)}")
    try:
        return BUILDERS[kind](dict(spec.get("config", {})), spec.get("loc"), spec.get("scale"))
    except TypeError as err:
        raise ValueError(f"malformed {kind} flow config: {err}") from None
