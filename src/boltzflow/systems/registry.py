"""Systems by name: ``get_system("alanine-dipeptide")``, ``get_system("peptide:AAA")``, ``get_system({"name": ...})``.

A system module registers a factory once, at import::

    @register("gmm40", summary="40-mode Gaussian mixture in 2-D (FAB)")
    def _gmm40(**params) -> System: ...

    @register("peptide:", prefix=True, summary="capped peptide ACE-SEQ-NME", examples=("peptide:AAA",))
    def _peptide(suffix: str, **params) -> System: ...

Exact names take keyword parameters; prefix factories get the text after the prefix first. The modules listed
in :data:`SYSTEM_MODULES` are imported on first use, so the registry is complete without importing every
system's dependencies at package import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from boltzflow.systems.base import System

# modules that register systems when imported (one line per system file)
SYSTEM_MODULES = (
    "boltzflow.systems.two_particle",
    "boltzflow.systems.alanine",
    "boltzflow.systems.gmm",
    "boltzflow.systems.manywell",
    "boltzflow.systems.particles",
    "boltzflow.systems.peptide",
)


class Entry(NamedTuple):
    """A registered factory.

    Attributes:
        name: exact name, or prefix ending in ``:`` for parametrised families.
        factory: builds the system from keyword parameters (prefix: ``factory(suffix, **params)``).
        prefix: whether ``name`` is a prefix.
        summary: one line for listings.
        examples: names to instantiate when listing a prefix family.
    """

    name: str
    factory: Callable[..., System]
    prefix: bool
    summary: str
    examples: tuple[str, ...]


_ENTRIES: dict[str, Entry] = {}
# names older checkpoints stored, mapped to today's systems
ALIASES = {"alanine-dipeptide-cartesian": "alanine-dipeptide"}
_loaded = False


def register(
    name: str, *, prefix: bool = False, summary: str = "", examples: tuple[str, ...] = ()
) -> Callable[[Callable[..., System]], Callable[..., System]]:
    """Decorator registering a system factory under ``name`` (a prefix such as ``"peptide:"`` with ``prefix``)."""
    if prefix and not name.endswith(":"):
        raise ValueError(f"a prefix name must end with ':', got {name!r}")

    def deco(factory: Callable[..., System]) -> Callable[..., System]:
        if name in _ENTRIES and _ENTRIES[name].factory is not factory:
            raise ValueError(f"system {name!r} is registered twice")
        _ENTRIES[name] = Entry(name, factory, prefix, summary, tuple(examples) or ((name,) if not prefix else ()))
        return factory

    return deco


def _load_all() -> None:
    global _loaded
    if not _loaded:
        for module in SYSTEM_MODULES:
            importlib.import_module(module)
        _loaded = True


def entries() -> list[Entry]:
    """Every registered factory, in registration order."""
    _load_all()
    return list(_ENTRIES.values())


def system_names() -> list[str]:
    """Names to list: exact names, and the examples of prefix families."""
    return [name for e in entries() for name in e.examples]


def get_system(spec: str | Mapping[str, Any]) -> System:
    """Build a system from its name or a spec dict ``{"name": ..., **params}``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad parameters.
    """
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
    else:
        raise ValueError(f"a system is a name or a {{'name': ...}} table, got {type(spec).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError("a system spec needs a non-empty 'name'")
    name = ALIASES.get(name, name)
    _load_all()
    try:
        if name in _ENTRIES and not _ENTRIES[name].prefix:
            return _ENTRIES[name].factory(**params)
        for entry in _ENTRIES.values():
            if entry.prefix and name.startswith(entry.name):
                return entry.factory(name[len(entry.name) :], **params)
    except TypeError as err:
        raise ValueError(f"bad parameters for system {name!r}: {err}") from None
    known = [e.name + ("SEQ" if e.prefix else "") for e in _ENTRIES.values()]
    raise ValueError(f"unknown system {name!r}; known systems: {', '.join(known)}")


def make_system(spec: str | Mapping[str, Any]) -> System:
    """Alias of :func:`get_system` (the name older checkpoints' code paths use)."""
    return get_system(spec)
