"""OpenMM as a differentiable torch energy: u(x) = U(x)/kT with forces from OpenMM.

One OpenMM call per configuration returns both the energy and the forces; the forces are kept for the backward
pass, so ``u.backward()`` costs nothing extra. With ``n_workers > 1`` the batch is split over worker processes
(spawned, each with its own Context) that are shut down by ``close()``, the context manager, garbage
collection or interpreter exit; a worker also exits by itself when its parent dies. As with any spawned
process, a script that uses workers needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from boltzflow.energies.base import Energy
from boltzflow.energies.openmm_system import kt_kj_per_mol

_JOIN_TIMEOUT_S = 5.0


class _Evaluator:
    """An OpenMM Context used only to evaluate energies and forces (a Verlet integrator that never steps)."""

    def __init__(self, system_xml: str, platform: str, properties: dict[str, str] | None) -> None:
        import openmm

        self.system = openmm.XmlSerializer.deserialize(system_xml)
        try:
            plat = openmm.Platform.getPlatformByName(platform)
        except Exception:
            names = [
                openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())
            ]
            raise ValueError(
                f"OpenMM platform {platform!r} is not available; choose one of {names}"
            ) from None
        integrator = openmm.VerletIntegrator(0.001)
        self.context = openmm.Context(self.system, integrator, plat, dict(properties or {}))
        self.n_atoms = self.system.getNumParticles()

    def __call__(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import openmm.unit as unit

        energies = np.empty(len(xyz))
        forces = np.empty((len(xyz), self.n_atoms, 3))
        for i, x in enumerate(xyz):
            self.context.setPositions(x)
            state = self.context.getState(getEnergy=True, getForces=True)
            energies[i] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces[i] = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        return energies, forces


def _worker_main(conn: Any, system_xml: str, platform: str, properties: dict[str, str] | None) -> None:
    """Worker loop: answer each (n, n_atoms, 3) array with (energies, forces) or an error; stop on None."""
    try:
        evaluator = _Evaluator(system_xml, platform, properties)
        conn.send(("ready", None))
    except Exception as err:  # report construction errors to the parent
        conn.send(("error", err))
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):  # parent gone
            return
        if msg is None:
            return
        try:
            conn.send(("ok", evaluator(msg)))
        except Exception as err:
            conn.send(("error", err))


def _shutdown(workers: list[Any], conns: list[Any]) -> None:
    """Stop worker processes: polite message, bounded join, then terminate. Safe to call twice."""
    for conn in conns:
        try:
            conn.send(None)
        except (OSError, ValueError):
            pass
    for proc in workers:
        proc.join(_JOIN_TIMEOUT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(_JOIN_TIMEOUT_S)
    for conn in conns:
        conn.close()
    workers.clear()
    conns.clear()


class _EnergyAndForce(torch.autograd.Function):
    """u(x) in kT; backward multiplies the saved -F/kT (same OpenMM call) by the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bridge: OpenMMEnergy) -> Tensor:  # type: ignore[override]
        flat = x.detach().reshape(-1, bridge.n_atoms, 3).to("cpu", torch.float64).numpy()
        energies, forces = bridge.evaluate(flat)
        kt = bridge.kt_kj_per_mol
        grad = torch.as_tensor(-forces / kt, dtype=x.dtype, device=x.device).reshape(x.shape)
        ctx.save_for_backward(grad)
        return torch.as_tensor(energies / kt, dtype=x.dtype, device=x.device).reshape(x.shape[:-2])

    @staticmethod
    def backward(ctx: Any, grad_u: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_u[..., None, None] * grad, None


class OpenMMEnergy(Energy):
    """Reduced potential u(x) = U(x)/kT of an OpenMM ``System``.

    Args:
        system: ``openmm.System`` (constraints in it are ignored for energy evaluation).
        temperature_kelvin: temperature that defines kT.
        platform: OpenMM platform name; "Reference" is the fastest for molecules of a few dozen atoms
            (see ``fastest_platform``).
        n_workers: number of worker processes; 1 evaluates in this process.
        platform_properties: OpenMM platform properties, e.g. ``{"Threads": "1"}`` for CPU.
    """

    def __init__(
        self,
        system: Any,
        temperature_kelvin: float = 300.0,
        platform: str = "Reference",
        n_workers: int = 1,
        platform_properties: dict[str, str] | None = None,
    ) -> None:
        import openmm

        super().__init__()
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        if not temperature_kelvin > 0:
            raise ValueError(f"temperature_kelvin must be positive, got {temperature_kelvin}")
        self.n_atoms = system.getNumParticles()
        self.event_shape = (self.n_atoms, 3)
        self.temperature_kelvin = float(temperature_kelvin)
        self.kt_kj_per_mol = kt_kj_per_mol(temperature_kelvin)
        self.platform = platform
        self.n_workers = n_workers
        system_xml = openmm.XmlSerializer.serialize(system)
        self._workers: list[Any] = []
        self._conns: list[Any] = []
        self._local: _Evaluator | None = None
        if n_workers == 1:
            self._local = _Evaluator(system_xml, platform, platform_properties)
        else:
            self._start_workers(system_xml, platform, platform_properties)
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._conns)

    def _start_workers(self, system_xml: str, platform: str, properties: dict[str, str] | None) -> None:
        spawn = mp.get_context("spawn")
        for _ in range(self.n_workers):
            parent, child = spawn.Pipe()
            proc = spawn.Process(
                target=_worker_main, args=(child, system_xml, platform, properties), daemon=True
            )
            proc.start()
            child.close()
            self._workers.append(proc)
            self._conns.append(parent)
        for conn in self._conns:
            status, payload = self._recv(conn)
            if status == "error":
                _shutdown(self._workers, self._conns)
                raise payload

    def _recv(self, conn: Any) -> tuple[str, Any]:
        try:
            return conn.recv()
        except EOFError:
            _shutdown(self._workers, self._conns)
            raise RuntimeError(
                "an OpenMM worker process died; create a new OpenMMEnergy (a script starting workers needs "
                "an `if __name__ == '__main__':` guard)"
            ) from None

    def evaluate(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Potential energies and forces in OpenMM units.

        Args:
            xyz: positions, shape (n, n_atoms, 3), nm.

        Returns:
            energies, shape (n,), kJ/mol, and forces, shape (n, n_atoms, 3), kJ/mol/nm; float64.

        Raises:
            ValueError: wrong shape, non-finite positions, or a non-finite energy or force (the message names
                the first such configuration).
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        if xyz.ndim != 3 or xyz.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"expected positions of shape (n, {self.n_atoms}, 3) in nm, got {xyz.shape}")
        if not np.isfinite(xyz).all():
            raise ValueError("positions contain NaN or inf; OpenMM energies need finite coordinates")
        energies, forces = self._local(xyz) if self._local is not None else self._evaluate_in_workers(xyz)
        bad = np.flatnonzero(~(np.isfinite(energies) & np.isfinite(forces).all(axis=(1, 2))))
        if bad.size:
            raise ValueError(
                f"OpenMM gave a non-finite energy or force for configuration {bad[0]} ({bad.size} of {len(xyz)}"
                " bad; overlapping atoms?); check those positions"
            )
        return energies, forces

    def _evaluate_in_workers(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self._workers:
            raise RuntimeError("this OpenMMEnergy is closed; create a new one")
        parts = [p for p in np.array_split(xyz, len(self._workers)) if len(p)]
        for conn, part in zip(self._conns, parts, strict=False):
            conn.send(part)
        results = [self._recv(conn) for conn in self._conns[: len(parts)]]
        for status, payload in results:
            if status == "error":
                raise payload
        if not results:
            return np.empty(0), np.empty((0, self.n_atoms, 3))
        return np.concatenate([r[1][0] for r in results]), np.concatenate([r[1][1] for r in results])

    def energy(self, x: Tensor) -> Tensor:
        """Reduced energy u = U/kT, shape (..., n_atoms, 3) nm -> (...); differentiable via OpenMM forces."""
        self.check_shape(x)
        if not torch.isfinite(x).all():
            raise ValueError("positions contain NaN or inf; OpenMM energies need finite coordinates")
        return _EnergyAndForce.apply(x, self)

    def force(self, x: Tensor) -> Tensor:
        """-grad u = F/kT, shape (..., n_atoms, 3), kT/nm."""
        self.check_shape(x)
        _, forces = self.evaluate(x.detach().reshape(-1, self.n_atoms, 3).to("cpu", torch.float64).numpy())
        return torch.as_tensor(forces / self.kt_kj_per_mol, dtype=x.dtype, device=x.device).reshape(x.shape)

    def close(self) -> None:
        """Stop the worker processes (if any). Further evaluations with workers raise RuntimeError."""
        self._finalizer()

    def __enter__(self) -> OpenMMEnergy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def fastest_platform(
    system: Any,
    candidates: Sequence[str] = ("Reference", "CPU"),
    n_evaluations: int = 20,
    positions: np.ndarray | None = None,
) -> str:
    """Time energy+force evaluations on each available candidate platform and return the fastest one's name.

    Args:
        system: ``openmm.System``.
        candidates: platform names to try; unavailable ones are skipped.
        n_evaluations: timed evaluations per platform (after one warm-up call).
        positions: shape (n_atoms, 3), nm; default: atoms on a 0.15 nm cubic grid.
    """
    n = system.getNumParticles()
    if positions is None:
        side = int(np.ceil(n ** (1 / 3)))
        grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
        positions = 0.15 * grid[:n].astype(np.float64)
    xyz = np.repeat(np.asarray(positions, dtype=np.float64)[None], n_evaluations, axis=0)
    best, best_time = None, np.inf
    for name in candidates:
        try:
            energy = OpenMMEnergy(system, platform=name)
        except ValueError:
            continue
        energy.evaluate(xyz[:1])
        start = time.perf_counter()
        energy.evaluate(xyz)
        elapsed = time.perf_counter() - start
        energy.close()
        if elapsed < best_time:
            best, best_time = name, elapsed
    if best is None:
        raise ValueError(f"none of the OpenMM platforms {list(candidates)} is available")
    return best
