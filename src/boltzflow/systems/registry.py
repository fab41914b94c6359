"""Named systems, built from plain dicts ``{"name": ..., **params}`` (stored in configs and checkpoints)."""

from __future__ import annotations

from typing import Any


def make_system(spec: dict[str, Any]) -> Any:
    """Build a named system from its spec.

    Raises:
        ValueError: unknown name or parameters.
    """
    spec = dict(spec)
    name = spec.pop("name", None)
    if name == "two-particle":
        from boltzflow.systems.two_particle import TwoParticleSystem

        try:
            return TwoParticleSystem(**spec)
        except TypeError as err:
            raise ValueError(f"bad two-particle parameters: {err}") from None
    raise ValueError(f"unknown system {name!r}; known systems: ['two-particle']")
