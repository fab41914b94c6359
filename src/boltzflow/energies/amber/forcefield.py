"""``AmberEnergy``: a batched, differentiable AMBER force field built from any OpenMM System."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.amber import terms as T
from boltzflow.energies.amber.builder import ONE_4PI_EPS0, AmberParameters, read_system
from boltzflow.energies.base import Energy

BOLTZMANN_KJ_PER_MOL_K = 0.008314462618  # k_B N_A, kJ/(mol K)

TERM_NAMES = ("bond", "angle", "torsion", "lj", "coulomb", "gb", "surface_area")


class EnergyForce(NamedTuple):
    """Energies, shape (n,), kJ/mol, and forces, shape (n, n_atoms, 3), kJ/mol/nm."""

    energy_kj: Tensor
    force_kj: Tensor


class AmberEnergy(Energy):
    """AMBER energy in torch: bonds, angles, torsions, LJ + Coulomb with 1-4 exceptions, OBC GB + ACE.

    Reproduces OpenMM's Reference platform for NoCutoff systems. Constraints are not energy terms: the energy
    is evaluated on the coordinates as given. Frames from HBonds-constrained MD are therefore scored with
    their (constrained) X-H lengths in whatever harmonic bond terms the System has: a System built with
    ``constraints="none"`` has all of them (the full AMBER energy); one built with ``constraints=HBonds`` has
    none for the constrained bonds, because OpenMM's ForceField leaves them out, and ``from_system`` follows
    the System it is given, exactly as OpenMM's ``getState(getEnergy=True)`` does.

    Parameters live in float64 buffers; each call uses them in the dtype and on the device of ``x``
    (cached), so float32/float64 and CPU/CUDA follow the input (keep the module in float64 and pass float32
    positions for float32 speed). Forces come from autograd (:meth:`force`,
    :meth:`energy_and_force`).

    Soft-core regularisation (paper 001, eq. (16)): with ``softcore_lj_nm`` / ``softcore_coulomb_nm`` > 0
    every pair distance r in the LJ / Coulomb sums becomes sqrt(r^2 + eps^2); with ``softcore_14=True``
    (default) the 1-4 exception pairs are softened too, with ``False`` they keep the exact r. The GB and
    surface terms are never softened.

    Attributes:
        event_shape: ``(n_atoms, 3)``.
        temperature_kelvin: temperature that defines kT.
        kt_kj_per_mol: kT in kJ/mol.
    """

    def __init__(
        self,
        params: AmberParameters,
        temperature_kelvin: float = 300.0,
        softcore_lj_nm: float = 0.0,
        softcore_coulomb_nm: float = 0.0,
        softcore_14: bool = True,
    ) -> None:
        super().__init__()
        if softcore_lj_nm < 0 or softcore_coulomb_nm < 0:
            raise ValueError("soft-core lengths must be >= 0 nm")
        self.event_shape = (params.n_atoms, 3)
        self.temperature_kelvin = float(temperature_kelvin)
        self.kt_kj_per_mol = BOLTZMANN_KJ_PER_MOL_K * self.temperature_kelvin
        f64 = torch.float64
        quads, inverse = np.unique(params.torsion_idx.reshape(-1, 4), axis=0, return_inverse=True)
        self.register_buffer("torsion_quads", torch.as_tensor(quads.reshape(-1, 4), dtype=torch.long))
        self.register_buffer("torsion_map", torch.as_tensor(inverse.reshape(-1), dtype=torch.long))
        for name in ("bond_idx", "angle_idx", "torsion_idx", "pair_idx"):
            self.register_buffer(name, torch.as_tensor(getattr(params, name), dtype=torch.long))
        for name in (
            "bond_k",
            "bond_r0",
            "angle_k",
            "angle_theta0",
            "torsion_n",
            "torsion_phase",
            "torsion_k",
        ):
            self.register_buffer(name, torch.as_tensor(getattr(params, name), dtype=f64))
        self.register_buffer("pair_qq", torch.as_tensor(params.pair_qq, dtype=f64))
        self.register_buffer("pair_sigma", torch.as_tensor(params.pair_sigma, dtype=f64))
        self.register_buffer("pair_epsilon", torch.as_tensor(params.pair_epsilon, dtype=f64))
        self.register_buffer("pair_is_14", torch.as_tensor(params.pair_is_14, dtype=torch.bool))
        keep = torch.as_tensor(~params.pair_is_14 | softcore_14, dtype=f64)
        self.register_buffer("softcore_lj2", keep * softcore_lj_nm**2 if softcore_lj_nm > 0 else None)
        self.register_buffer(
            "softcore_coulomb2", keep * softcore_coulomb_nm**2 if softcore_coulomb_nm > 0 else None
        )
        self.has_solvent = params.obc is not None
        if params.obc is not None:
            obc = params.obc
            self.register_buffer("obc_charge", torch.as_tensor(obc.charge, dtype=f64))
            self.register_buffer("obc_radius", torch.as_tensor(obc.radius, dtype=f64))
            self.register_buffer("obc_scale", torch.as_tensor(obc.scale, dtype=f64))
            inv = 1.0 / obc.solute_dielectric - 1.0 / obc.solvent_dielectric
            self.gb_prefactor = (
                -ONE_4PI_EPS0 * inv if obc.solute_dielectric and obc.solvent_dielectric else 0.0
            )
            self.surface_area_energy = obc.surface_area_energy
        self._cache: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}

    @classmethod
    def from_system(cls, system, temperature_kelvin: float = 300.0, **softcore) -> AmberEnergy:
        """Build from an ``openmm.System`` (see :func:`read_system` for the supported forces).

        Args:
            system: NoCutoff ``openmm.System`` with only the supported forces.
            temperature_kelvin: defines kT for :meth:`energy`.
            **softcore: ``softcore_lj_nm``, ``softcore_coulomb_nm``, ``softcore_14`` (see the class
                docstring).

        Raises:
            ValueError: an unsupported force (named in the message) or non-NoCutoff method.
        """
        return cls(read_system(system), temperature_kelvin, **softcore)

    # ---------------------------------------------------------------- parameters in the dtype/device of x
    def _apply(self, fn, *args, **kwargs):
        self._cache = {}
        return super()._apply(fn, *args, **kwargs)

    def _p(self, x: Tensor) -> dict[str, Tensor]:
        key = (x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = {
                name: b.to(device=x.device, dtype=x.dtype if b.is_floating_point() else b.dtype)
                for name, b in self.named_buffers()
            }
        return self._cache[key]

    def _check(self, x: Tensor) -> None:
        self.check_shape(x)
        if not x.is_floating_point():
            raise ValueError(f"positions must be a float tensor, got {x.dtype}")
        if torch.isnan(x).any():
            raise ValueError("positions contain NaN; remove or fix those frames")

    # ---------------------------------------------------------------- terms (kJ/mol, shape (...))
    def bond(self, x: Tensor) -> Tensor:
        """Harmonic bond energy, x (..., n_atoms, 3) nm -> (...) kJ/mol."""
        self._check(x)
        p = self._p(x)
        return T.bond_energy(x, p["bond_idx"], p["bond_k"], p["bond_r0"])

    def angle(self, x: Tensor) -> Tensor:
        """Harmonic angle energy, x (..., n_atoms, 3) nm -> (...) kJ/mol."""
        self._check(x)
        p = self._p(x)
        return T.angle_energy(x, p["angle_idx"], p["angle_k"], p["angle_theta0"])

    def torsion(self, x: Tensor) -> Tensor:
        """Periodic torsion energy (propers + impropers), x (..., n_atoms, 3) nm -> (...) kJ/mol."""
        self._check(x)
        p = self._p(x)
        return T.torsion_energy(
            x, p["torsion_quads"], p["torsion_n"], p["torsion_phase"], p["torsion_k"], p["torsion_map"]
        )

    def lj(self, x: Tensor) -> Tensor:
        """Lennard-Jones energy incl. scaled 1-4 pairs, x (..., n_atoms, 3) nm -> (...) kJ/mol."""
        self._check(x)
        p = self._p(x)
        r = T.pair_distance(x, p["pair_idx"])
        return T.lj_energy(r, p["pair_sigma"], p["pair_epsilon"], p.get("softcore_lj2"))

    def coulomb(self, x: Tensor) -> Tensor:
        """Vacuum Coulomb energy incl. scaled 1-4 pairs, x (..., n_atoms, 3) nm -> (...) kJ/mol."""
        self._check(x)
        p = self._p(x)
        r = T.pair_distance(x, p["pair_idx"])
        return T.coulomb_energy(r, p["pair_qq"], p.get("softcore_coulomb2"))

    def born_radii(self, x: Tensor) -> Tensor:
        """OBC effective Born radii, x (..., n_atoms, 3) nm -> (..., n_atoms) nm (needs implicit solvent)."""
        self._check(x)
        if not self.has_solvent:
            raise ValueError("this system has no GBSAOBCForce (vacuum): there are no Born radii")
        p = self._p(x)
        return T.obc_born_radii(T.squared_distance_matrix(x), p["obc_radius"], p["obc_scale"])

    def solvation(self, x: Tensor) -> Tensor:
        """GBSAOBCForce energy (GB polar + ACE), x (..., n_atoms, 3) nm -> (...) kJ/mol; 0 in vacuum."""
        t = self.terms(x)
        return t["gb"] + t["surface_area"]

    def terms(self, x: Tensor) -> dict[str, Tensor]:
        """Every term once, ``{name: (...) kJ/mol}`` for the names in ``TERM_NAMES``.

        ``gb`` (OBC polar solvation) and ``surface_area`` (ACE) are the two parts of OpenMM's GBSAOBCForce;
        both are zero in vacuum.

        Args:
            x: positions, shape (..., n_atoms, 3), nm.
        """
        self._check(x)
        p = self._p(x)
        out = {
            "bond": T.bond_energy(x, p["bond_idx"], p["bond_k"], p["bond_r0"]),
            "angle": T.angle_energy(x, p["angle_idx"], p["angle_k"], p["angle_theta0"]),
            "torsion": T.torsion_energy(
                x, p["torsion_quads"], p["torsion_n"], p["torsion_phase"], p["torsion_k"], p["torsion_map"]
            ),
        }
        r = T.pair_distance(x, p["pair_idx"])
        out["lj"] = T.lj_energy(r, p["pair_sigma"], p["pair_epsilon"], p.get("softcore_lj2"))
        out["coulomb"] = T.coulomb_energy(r, p["pair_qq"], p.get("softcore_coulomb2"))
        if self.has_solvent:
            r2 = T.squared_distance_matrix(x)
            born = T.obc_born_radii(r2, p["obc_radius"], p["obc_scale"])
            out["gb"] = T.gb_energy(r2, born, p["obc_charge"], self.gb_prefactor)
            out["surface_area"] = T.ace_energy(born, p["obc_radius"], self.surface_area_energy)
        else:
            out["gb"] = out["surface_area"] = x.new_zeros(x.shape[:-2])
        return out

    # ---------------------------------------------------------------- totals
    def energy_kj(self, x: Tensor) -> Tensor:
        """Total potential energy, x (..., n_atoms, 3) nm -> (...) kJ/mol."""
        return sum(self.terms(x).values())

    def energy(self, x: Tensor) -> Tensor:
        """Reduced energy u = U/kT, x (..., n_atoms, 3) nm -> (...)."""
        return self.energy_kj(x) / self.kt_kj_per_mol

    def energy_and_force(self, x: Tensor | np.ndarray, chunk_size: int = 1024) -> EnergyForce:
        """Energies and forces (-dU/dx by autograd) in kJ/mol, evaluated in chunks to bound memory.

        Args:
            x: positions, shape (n, n_atoms, 3), nm (a NumPy array is converted with this module's dtype).
            chunk_size: frames per autograd pass.

        Returns:
            :class:`EnergyForce` with shapes (n,) and (n, n_atoms, 3), detached.
        """
        if not isinstance(x, Tensor):
            x = torch.as_tensor(np.asarray(x), dtype=self.pair_qq.dtype, device=self.pair_qq.device)
        if x.dim() != 3:
            raise ValueError(
                f"energy_and_force expects positions of shape (n, n_atoms, 3), got {tuple(x.shape)}"
            )
        self._check(x)
        energies, forces = [], []
        with torch.enable_grad():
            for chunk in x.split(chunk_size):
                chunk = chunk.detach().requires_grad_(True)
                e = self.energy_kj(chunk)
                (grad,) = torch.autograd.grad(e.sum(), chunk)
                energies.append(e.detach())
                forces.append(-grad)
        return EnergyForce(torch.cat(energies), torch.cat(forces))
