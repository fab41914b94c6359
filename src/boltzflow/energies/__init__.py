"""Reduced potentials u(x) = U(x)/kT: toy systems, regularisations, OpenMM and torch force fields."""

from boltzflow.energies.base import Energy

__all__ = ["Energy"]
