"""A batched, differentiable AMBER force field in torch, built from any (NoCutoff) OpenMM System.

``AmberEnergy.from_system(system)`` reads HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce,
NonbondedForce and GBSAOBCForce and reproduces OpenMM's Reference energies; ``terms(x)`` gives each term.
"""

from boltzflow.energies.amber.builder import AmberParameters, ObcParameters, read_system
from boltzflow.energies.amber.forcefield import TERM_NAMES, AmberEnergy, EnergyForce

__all__ = ["TERM_NAMES", "AmberEnergy", "AmberParameters", "EnergyForce", "ObcParameters", "read_system"]
