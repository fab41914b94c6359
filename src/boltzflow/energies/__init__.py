"""Reduced potentials u(x) = U(x)/kT: toy systems, regularisations, OpenMM and torch force fields.

OpenMM is imported only when an OpenMM-backed object is built.
"""

from boltzflow.energies.amber import AmberEnergy
from boltzflow.energies.base import Energy
from boltzflow.energies.regularize import HighEnergyCap
from boltzflow.energies.two_particle import TwoParticleCoulomb

__all__ = ["AmberEnergy", "Energy", "HighEnergyCap", "TwoParticleCoulomb"]
