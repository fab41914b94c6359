"""Z-matrices: which already-placed atoms each atom is built from, chosen from the molecular bond graph.

A Z-matrix is a table of rows ``(atom, bond_partner, angle_partner, torsion_partner)``. Atom ``atom`` sits
at the bond length from ``bond_partner``, at the bond angle ``atom-bond_partner-angle_partner`` and at the
torsion ``atom-bond_partner-angle_partner-torsion_partner``. The first three rows are the *root* atoms, which
have no torsion partner (row 0 has no partner at all, row 1 only a bond partner); ``-1`` marks a missing
partner. Every partner must appear in an earlier row, and every atom of the molecule in exactly one row.

Rows are grouped into *generations*: generation 0 holds the roots, and a later row belongs to the generation
after the latest of its three partners. All atoms of one generation can be placed at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from boltzflow.errors import BoltzflowError


@dataclass(frozen=True, eq=False)
class ZMatrix:
    """A validated Z-matrix.

    Attributes:
        rows: int64 array, shape (n_atoms, 4): ``(atom, bond_partner, angle_partner, torsion_partner)``,
            ``-1`` where a root row has no partner.
        generations: one int64 array of row indices (into ``rows``) per generation after the roots, in
            placement order; derived from ``rows``.
    """

    rows: np.ndarray
    generations: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = np.asarray(self.rows, dtype=np.int64)
        _validate(rows)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "generations", _generations(rows))

    @property
    def n_atoms(self) -> int:
        return int(self.rows.shape[0])

    @property
    def roots(self) -> tuple[int, int, int]:
        """The three root atoms, in placement order."""
        return int(self.rows[0, 0]), int(self.rows[1, 0]), int(self.rows[2, 0])


def _validate(rows: np.ndarray) -> None:
    """Raise a one-line BoltzflowError when ``rows`` is not a valid Z-matrix."""
    if rows.ndim != 2 or rows.shape[1] != 4 or rows.shape[0] < 3:
        raise BoltzflowError(f"a Z-matrix needs shape (n_atoms >= 3, 4), got {rows.shape}")
    n = rows.shape[0]
    atoms = rows[:, 0]
    if sorted(atoms.tolist()) != list(range(n)):
        missing = sorted(set(range(n)) - set(atoms.tolist()))
        repeated = sorted({int(a) for a in atoms if (atoms == a).sum() > 1})
        raise BoltzflowError(
            f"every atom 0..{n - 1} must be placed exactly once; missing {missing}, placed twice {repeated}"
        )
    expected_missing = [3, 2, 1]  # partners absent in rows 0, 1, 2
    position = {int(a): r for r, a in enumerate(atoms)}
    for r, (atom, *partners) in enumerate(rows.tolist()):
        n_absent = expected_missing[r] if r < 3 else 0
        given, absent = partners[: 3 - n_absent], partners[3 - n_absent :]
        if any(p != -1 for p in absent) or any(p < 0 for p in given):
            raise BoltzflowError(f"Z-matrix row {r} (atom {atom}) must have exactly {3 - n_absent} partners")
        if len({atom, *given}) != len(given) + 1:
            raise BoltzflowError(f"Z-matrix row {r} (atom {atom}) repeats an atom among its partners {given}")
        late = [p for p in given if p >= n or position[p] >= r]
        if late:
            raise BoltzflowError(f"Z-matrix row {r} (atom {atom}) uses partners {late} not placed before it")


def _generations(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Row indices grouped by generation (roots excluded)."""
    row_of = {int(a): r for r, a in enumerate(rows[:, 0])}
    gen = np.zeros(rows.shape[0], dtype=np.int64)
    for r in range(3, rows.shape[0]):
        gen[r] = 1 + max(gen[row_of[int(p)]] for p in rows[r, 1:])
    return tuple(np.flatnonzero(gen == g) for g in range(1, int(gen.max(initial=0)) + 1))


def bonds_from_topology(topology: object) -> list[tuple[int, int]]:
    """The bond list of an ``openmm.app.Topology`` as atom-index pairs."""
    return [(int(a.index), int(b.index)) for a, b in topology.bonds()]


def build_zmatrix(
    bonds: object | Iterable[Sequence[int]],
    n_atoms: int | None = None,
    roots: Sequence[int] | None = None,
) -> ZMatrix:
    """Build a Z-matrix from the bond graph, breadth-first from three root atoms.

    Each atom is placed from its breadth-first parent (bond partner), the parent's own reference (angle
    partner) and a third placed neighbour of those two (torsion partner), preferring backbone atoms, so that
    hydrogens end up as leaves and never serve as references when a heavier choice exists.

    Args:
        bonds: an ``openmm.app.Topology`` or an iterable of atom-index pairs.
        n_atoms: number of atoms; taken from the topology when one is given, else required.
        roots: three atoms ``(r0, r1, r2)``, ``r1`` bonded to ``r0`` and ``r2`` bonded to ``r0`` or ``r1``;
            default: the most central atom with at least two neighbours and its two best-ranked neighbours
            (most non-terminal neighbours first).

    Raises:
        BoltzflowError: fewer than three atoms, a bond out of range, bad roots, or atoms that cannot be
            reached from the roots (a disconnected bond graph).
    """
    if hasattr(bonds, "bonds") and hasattr(bonds, "getNumAtoms"):
        n_atoms = bonds.getNumAtoms() if n_atoms is None else n_atoms
        bonds = bonds_from_topology(bonds)
    if n_atoms is None:
        raise BoltzflowError("build_zmatrix needs n_atoms when given a bond list")
    nbrs = _neighbours(bonds, n_atoms)
    root = _check_roots(tuple(roots), nbrs) if roots is not None else _default_roots(nbrs)
    rows = _root_rows(root, nbrs)
    placed = set(root)
    parent = {root[1]: root[0], root[2]: rows[2][1]}
    queue = deque(root)
    while queue:
        j = queue.popleft()
        for i in _ranked(nbrs, nbrs[j] - placed):
            k = parent[j] if j in parent else _pick(nbrs, nbrs[j] & placed, ())
            h = _pick(nbrs, (nbrs[k] | nbrs[j]) & placed, (i, j, k), prefer=nbrs[k])
            rows.append((i, j, k, h))
            parent[i] = j
            placed.add(i)
            queue.append(i)
    unplaced = sorted(set(range(n_atoms)) - placed)
    if unplaced:
        raise BoltzflowError(
            f"cannot place atoms {unplaced[:10]}{'...' if len(unplaced) > 10 else ''}: they are not bonded "
            f"to the rest of the molecule; give a connected topology or an explicit Z-matrix"
        )
    return ZMatrix(np.array(rows, dtype=np.int64))


def _neighbours(bonds: Iterable[Sequence[int]], n_atoms: int) -> list[set[int]]:
    if n_atoms < 3:
        raise BoltzflowError(f"internal coordinates need at least 3 atoms, got {n_atoms}")
    nbrs: list[set[int]] = [set() for _ in range(n_atoms)]
    for bond in bonds:
        a, b = (int(v) for v in bond)
        if not (0 <= a < n_atoms and 0 <= b < n_atoms) or a == b:
            raise BoltzflowError(f"bond ({a}, {b}) is not a pair of distinct atoms in 0..{n_atoms - 1}")
        nbrs[a].add(b)
        nbrs[b].add(a)
    return nbrs


def _ranked(nbrs: list[set[int]], atoms: Iterable[int]) -> list[int]:
    """Atoms sorted by decreasing number of non-terminal neighbours, then degree, then index (deterministic).

    Backbone atoms come first, then branches, then terminal atoms (hydrogens).
    """
    return sorted(atoms, key=lambda a: (-sum(len(nbrs[b]) > 1 for b in nbrs[a]), -len(nbrs[a]), a))


def _pick(
    nbrs: list[set[int]], candidates: set[int], exclude: Sequence[int], prefer: set[int] = frozenset()
) -> int:
    """The best-ranked candidate not in ``exclude``, members of ``prefer`` first."""
    options = _ranked(nbrs, candidates - set(exclude))
    options.sort(key=lambda a: a not in prefer)  # stable: preferred first, rank kept within each group
    if not options:  # cannot happen for a breadth-first tree from valid roots; kept as a guard
        raise BoltzflowError(f"no reference atom near atoms {list(exclude)}; give an explicit Z-matrix")
    return options[0]


def _default_roots(nbrs: list[set[int]]) -> tuple[int, int, int]:
    branching = [a for a in range(len(nbrs)) if len(nbrs[a]) >= 2]
    if not branching:
        raise BoltzflowError("the bond graph has no atom with two bonds; give roots or an explicit Z-matrix")
    r0 = min(branching, key=lambda a: (_eccentricity(nbrs, a), _ranked(nbrs, branching).index(a)))
    r1, r2 = _ranked(nbrs, nbrs[r0])[:2]
    return r0, r1, r2


def _eccentricity(nbrs: list[set[int]], start: int) -> int:
    """Largest graph distance from ``start`` to a reachable atom (unreachable atoms are reported later)."""
    depth, queue = {start: 0}, deque([start])
    while queue:
        a = queue.popleft()
        for b in nbrs[a] - depth.keys():
            depth[b] = depth[a] + 1
            queue.append(b)
    return max(depth.values())


def _check_roots(roots: tuple[int, ...], nbrs: list[set[int]]) -> tuple[int, int, int]:
    ok = len(roots) == 3 and len(set(roots)) == 3 and all(0 <= r < len(nbrs) for r in roots)
    if not ok or roots[1] not in nbrs[roots[0]] or not ({roots[0], roots[1]} & nbrs[roots[2]]):
        raise BoltzflowError(
            f"roots {roots} must be three distinct atoms r0-r1 bonded and r2 bonded to r0 or r1"
        )
    return roots  # type: ignore[return-value]


def _root_rows(root: tuple[int, int, int], nbrs: list[set[int]]) -> list[tuple[int, int, int, int]]:
    r0, r1, r2 = root
    j2, k2 = (r1, r0) if r1 in nbrs[r2] else (r0, r1)
    return [(r0, -1, -1, -1), (r1, r0, -1, -1), (r2, j2, k2, -1)]
