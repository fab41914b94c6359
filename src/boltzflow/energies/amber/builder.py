"""Read AMBER parameters out of an OpenMM ``System`` into plain NumPy arrays.

OpenMM is imported lazily, inside :func:`read_system`, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# OpenMM's Reference constants (openmm/reference/SimTKOpenMMRealType.h, CODATA 2018).
_E_CHARGE = 1.602176634e-19
_AVOGADRO = 6.02214076e23
_EPSILON0 = 1e-6 * 8.8541878128e-12 / (_E_CHARGE * _E_CHARGE * _AVOGADRO)  # e^2 / (kJ/mol nm)
ONE_4PI_EPS0 = 1.0 / (4.0 * math.pi * _EPSILON0)  # kJ/mol nm / e^2, ~138.935

IGNORED_FORCES = ("CMMotionRemover",)  # forces that contribute no energy


@dataclass
class ObcParameters:
    """Parameters of an OpenMM ``GBSAOBCForce`` (OBC type II, NoCutoff).

    Attributes:
        charge: shape (n_atoms,), e.
        radius: shape (n_atoms,), nm (before the 0.009 nm dielectric offset).
        scale: shape (n_atoms,), dimensionless scaling factors of the descreening radii.
        solute_dielectric: inner dielectric constant.
        solvent_dielectric: outer dielectric constant.
        surface_area_energy: ACE surface tension, kJ/mol/nm^2.
    """

    charge: np.ndarray
    radius: np.ndarray
    scale: np.ndarray
    solute_dielectric: float
    solvent_dielectric: float
    surface_area_energy: float


@dataclass
class AmberParameters:
    """All energy parameters of a System, flattened into index/parameter arrays.

    Attributes:
        n_atoms: number of particles.
        bond_idx: shape (n_bonds, 2) ints; bond_k kJ/mol/nm^2 and bond_r0 nm, shape (n_bonds,).
        angle_idx: shape (n_angles, 3) ints; angle_k kJ/mol/rad^2 and angle_theta0 rad, shape (n_angles,).
        torsion_idx: shape (n_torsions, 4) ints; torsion_n (periodicity), torsion_phase rad,
            torsion_k kJ/mol, shape (n_torsions,). Impropers are periodic torsions too.
        pair_idx: shape (n_pairs, 2) ints, every interacting non-bonded pair (normal pairs and 1-4 exceptions;
            fully excluded pairs are dropped).
        pair_qq: shape (n_pairs,), ONE_4PI_EPS0 * q_i q_j (or the exception's chargeProd), kJ/mol nm.
        pair_sigma: shape (n_pairs,), nm; pair_epsilon: shape (n_pairs,), kJ/mol.
        pair_is_14: shape (n_pairs,) bools, True for pairs that come from an exception (scaled 1-4 pairs).
        obc: GBSAOBCForce parameters, or None in vacuum.
    """

    n_atoms: int
    bond_idx: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    bond_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bond_r0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angle_idx: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    angle_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    angle_theta0: np.ndarray = field(default_factory=lambda: np.zeros(0))
    torsion_idx: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    torsion_n: np.ndarray = field(default_factory=lambda: np.zeros(0))
    torsion_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))
    torsion_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_idx: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    pair_qq: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_sigma: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_epsilon: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_is_14: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    obc: ObcParameters | None = None


def read_system(system) -> AmberParameters:
    """Flatten the forces of an ``openmm.System`` into :class:`AmberParameters`.

    Supported: HarmonicBondForce, HarmonicAngleForce, PeriodicTorsionForce, NonbondedForce (NoCutoff),
    GBSAOBCForce (NoCutoff); CMMotionRemover is ignored. Constraints are ignored (they are not energy terms).

    Raises:
        ValueError: a force class not listed above (the message names it), a cutoff/periodic method,
            parameter offsets, or virtual sites.
    """
    import openmm as mm

    n = system.getNumParticles()
    for i in range(n):
        if system.isVirtualSite(i):
            raise ValueError(f"particle {i} is a virtual site; AmberEnergy supports plain particles only")
    readers = {
        mm.HarmonicBondForce: _read_bonds,
        mm.HarmonicAngleForce: _read_angles,
        mm.PeriodicTorsionForce: _read_torsions,
        mm.NonbondedForce: _read_nonbonded,
        mm.GBSAOBCForce: _read_obc,
    }
    lists: dict[str, list] = {}
    params = AmberParameters(n_atoms=n)
    for force in system.getForces():
        name = type(force).__name__
        if name in IGNORED_FORCES:
            continue
        reader = readers.get(type(force))
        if reader is None:
            raise ValueError(
                f"unsupported force {name}: AmberEnergy handles {', '.join(r.__name__ for r in readers)}"
            )
        reader(force, params, lists)
    for key, rows in lists.items():
        setattr(
            params,
            key,
            np.asarray(rows, dtype=getattr(params, key).dtype).reshape(-1, *getattr(params, key).shape[1:]),
        )
    return params


def _value(quantity) -> float:
    """Strip OpenMM units (values are already in nm, kJ/mol, rad, e)."""
    return float(quantity._value if hasattr(quantity, "_value") else quantity)


def _append(lists: dict[str, list], **columns) -> None:
    for key, value in columns.items():
        lists.setdefault(key, []).append(value)


def _read_bonds(force, params: AmberParameters, lists: dict[str, list]) -> None:
    _check_not_periodic(force)
    for b in range(force.getNumBonds()):
        i, j, r0, k = force.getBondParameters(b)
        _append(lists, bond_idx=(i, j), bond_r0=_value(r0), bond_k=_value(k))


def _read_angles(force, params: AmberParameters, lists: dict[str, list]) -> None:
    _check_not_periodic(force)
    for a in range(force.getNumAngles()):
        i, j, k, theta0, kk = force.getAngleParameters(a)
        _append(lists, angle_idx=(i, j, k), angle_theta0=_value(theta0), angle_k=_value(kk))


def _read_torsions(force, params: AmberParameters, lists: dict[str, list]) -> None:
    _check_not_periodic(force)
    for t in range(force.getNumTorsions()):
        i, j, k, m, per, phase, kk = force.getTorsionParameters(t)
        _append(
            lists,
            torsion_idx=(i, j, k, m),
            torsion_n=float(per),
            torsion_phase=_value(phase),
            torsion_k=_value(kk),
        )


def _read_nonbonded(force, params: AmberParameters, lists: dict[str, list]) -> None:
    import openmm as mm

    if force.getNonbondedMethod() != mm.NonbondedForce.NoCutoff:
        raise ValueError(
            "NonbondedForce must use NoCutoff (build the system with nonbondedMethod=app.NoCutoff)"
        )
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise ValueError("NonbondedForce parameter offsets (alchemical parameters) are not supported")
    n = force.getNumParticles()
    q, sig, eps = (np.array([_value(force.getParticleParameters(i)[c]) for i in range(n)]) for c in range(3))
    special: dict[tuple[int, int], tuple[float, float, float]] = {}
    for e in range(force.getNumExceptions()):
        i, j, qq, s, ep = force.getExceptionParameters(e)
        special[(min(i, j), max(i, j))] = (_value(qq), _value(s), _value(ep))
    i_all, j_all = np.triu_indices(n, k=1)
    for i, j in zip(i_all.tolist(), j_all.tolist(), strict=True):
        if (i, j) in special:
            qq, s, ep = special[(i, j)]
            is_14 = True
        else:
            qq, s, ep = q[i] * q[j], 0.5 * (sig[i] + sig[j]), math.sqrt(eps[i] * eps[j])
            is_14 = False
        if qq == 0.0 and ep == 0.0:
            continue  # excluded (or non-interacting) pair
        _append(
            lists, pair_idx=(i, j), pair_qq=ONE_4PI_EPS0 * qq, pair_sigma=s, pair_epsilon=ep, pair_is_14=is_14
        )


def _read_obc(force, params: AmberParameters, lists: dict[str, list]) -> None:
    import openmm as mm

    if force.getNonbondedMethod() != mm.GBSAOBCForce.NoCutoff:
        raise ValueError(
            "GBSAOBCForce must use NoCutoff (build the system with nonbondedMethod=app.NoCutoff)"
        )
    if params.obc is not None:
        raise ValueError("more than one GBSAOBCForce in the system; AmberEnergy supports one")
    rows = np.array(
        [[_value(v) for v in force.getParticleParameters(i)] for i in range(force.getNumParticles())]
    )
    params.obc = ObcParameters(
        charge=rows[:, 0],
        radius=rows[:, 1],
        scale=rows[:, 2],
        solute_dielectric=float(force.getSoluteDielectric()),
        solvent_dielectric=float(force.getSolventDielectric()),
        surface_area_energy=_value(force.getSurfaceAreaEnergy()),
    )


def _check_not_periodic(force) -> None:
    if force.usesPeriodicBoundaryConditions():
        raise ValueError(
            f"{type(force).__name__} uses periodic boundary conditions; AmberEnergy is non-periodic"
        )
