"""The System contract: everything about one thing we sample, in one object.

A :class:`System` owns

* the event shape of one configuration and the temperature (``None`` for model systems in reduced units);
* ``energy()``: the reduced potential u(x) = U(x)/kT as an :class:`~boltzflow.energies.base.Energy` (batched
  torch, float64 parameters; it computes in the dtype and on the device of its input, or after ``.to()``),
  with forces ``-grad u``;
* the coordinate layout a flow should use: Cartesian, or a Z-matrix for molecules (:meth:`zmatrix`);
* reference data with their provenance (:meth:`references`): MD frames, umbrella F(φ), exact samplers,
  long MCMC runs;
* observables (:meth:`observables`): per-sample quantities such as dihedrals, basins, distances;
* where known, the exact ``log_z`` of ``exp(-u)`` and an exact sampler (:meth:`sample_exact`).

Systems are registered by name in :mod:`boltzflow.systems.registry`; nothing outside ``systems/`` needs to know
an atom count or a dimension.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from boltzflow.energies.base import Energy


class Reference(NamedTuple):
    """One reference a system has, loaded lazily.

    Attributes:
        name: short name, unique per system (``"md"``, ``"umbrella"``, ``"exact"``, ``"mcmc"``).
        kind: ``"samples"`` (``load()`` returns configurations, shape (n, *event_shape), float64),
            ``"free_energy"`` (a dict with ``phi_grid`` rad, ``free_energy_kt``, populations) or ``"sampler"``
            (the system's :meth:`System.sample_exact`).
        description: provenance in one line: how it was made, its length, its wall time, its file.
        load: zero-argument loader.
    """

    name: str
    kind: str
    description: str
    load: Callable[[], Any]


class Observable(NamedTuple):
    """A per-sample quantity of a system.

    Attributes:
        name: short name (``"phi_psi"``, ``"basin"``, ``"r"``).
        unit: unit of the values (``"rad"``, ``"nm"``, ``"index"``, ``""``).
        fn: ``x (n, *event_shape) -> values (n, ...)``.
    """

    name: str
    unit: str
    fn: Callable[[Tensor], Tensor]


class System(abc.ABC):
    """What is sampled. Subclasses set the class attributes (or instance attributes) below.

    Attributes:
        name: the registry name (``"alanine-dipeptide"``, ``"peptide:AAA"``, ``"gmm40"``).
        event_shape: shape of one configuration, ``(n_atoms, 3)`` for molecules, ``(d,)`` for model systems.
        temperature_kelvin: temperature of the reduced energy, or None for model systems in reduced units.
        log_z: exact ``log ∫ exp(-u(x)) dx`` when known (model systems), else None.
        description: one line for ``boltzflow systems``.
    """

    name: str
    event_shape: tuple[int, ...]
    temperature_kelvin: float | None = None
    log_z: float | None = None
    description: str = ""

    @property
    def dim(self) -> int:
        """Number of coordinates of one configuration (product of ``event_shape``)."""
        return math.prod(self.event_shape)

    @abc.abstractmethod
    def energy(self) -> Energy:
        """The reduced energy u(x) in kT, ``(..., *event_shape) -> (...)``, with ``force = -grad u``."""

    def flat_energy(self) -> Callable[[Tensor], Tensor]:
        """u on flattened configurations, ``(..., dim) -> (...)``: what a flow on R^dim is trained against."""
        energy = self.energy()
        shape = self.event_shape
        return lambda x: energy(x.unflatten(-1, shape))

    def zmatrix(self) -> Any:
        """The :class:`~boltzflow.flows.zmatrix.ZMatrix` for internal-coordinate flows, or None (Cartesian)."""
        return None

    def references(self) -> dict[str, Reference]:
        """References by name (empty when the system has none)."""
        return {}

    def reference(self, name: str | None = None) -> Reference:
        """One reference by name; the first one when ``name`` is None.

        Raises:
            ValueError: the system has no such reference (the message lists the ones it has).
        """
        refs = self.references()
        if not refs:
            raise ValueError(f"system {self.name} has no reference data")
        if name is None:
            return next(iter(refs.values()))
        if name not in refs:
            raise ValueError(f"system {self.name} has no reference {name!r}; it has {sorted(refs)}")
        return refs[name]

    def observables(self) -> dict[str, Observable]:
        """Per-sample observables by name (empty when none)."""
        return {}

    def sample_exact(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples, shape (n, *event_shape), float64, for systems with an exact sampler.

        Raises:
            NotImplementedError: the system has none (use :meth:`references` instead).
        """
        raise NotImplementedError(f"system {self.name} has no exact sampler")

    @property
    def has_exact_sampler(self) -> bool:
        """True when :meth:`sample_exact` is implemented."""
        return type(self).sample_exact is not System.sample_exact

    def summary(self) -> dict[str, Any]:
        """What ``boltzflow systems`` prints: name, dimension, temperature, references, exact log Z."""
        return {
            "name": self.name,
            "event_shape": list(self.event_shape),
            "dim": self.dim,
            "temperature_kelvin": self.temperature_kelvin,
            "coordinates": "z-matrix" if self.zmatrix() is not None else "cartesian",
            "references": {r.name: r.description for r in self.references().values()},
            "exact_sampler": self.has_exact_sampler,
            "log_z": self.log_z,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, event_shape={self.event_shape})"
