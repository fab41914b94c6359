"""Named systems, built from plain dicts ``{"name": ..., **params}`` (stored in configs and checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MOLECULES = ("alanine-dipeptide", "alanine-dipeptide-cartesian")


@dataclass
class MoleculeSystem:
    """A molecule whose flow samples flattened Cartesian positions (n_atoms * 3 values, nm).

    Attributes:
        name: system name as stored in the checkpoint.
        solvent: "obc" (AMBER99SB-ILDN + OBC, default) or "vacuum".
        temperature_kelvin: temperature of the reduced energy.
        n_atoms: atoms per configuration (atom order of the shipped PDB).
    """

    name: str
    solvent: str = "obc"
    temperature_kelvin: float = 300.0
    n_atoms: int = 22

    def energy(self) -> Any:
        """Reduced AMBER energy (kT) of unconstrained coordinates, by the torch force field."""
        from boltzflow.energies.amber import AmberEnergy
        from boltzflow.energies.openmm_system import alanine_dipeptide

        molecule = alanine_dipeptide(solvent=self.solvent, constraints="none")
        return AmberEnergy.from_system(molecule.system, self.temperature_kelvin)


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
    if name in MOLECULES:
        keys = {"solvent", "temperature_kelvin", "n_atoms"}
        return MoleculeSystem(name, **{k: v for k, v in spec.items() if k in keys})
    raise ValueError(f"unknown system {name!r}; known systems: ['two-particle', {', '.join(map(repr, MOLECULES))}]")
