"""Reproductions as recipes: readable TOML files that name the system, the flow, the stages and the evaluation.

A recipe file has a few top-level keys and the tables of its runner's typed config::

    name = "alanine-bg"
    runner = "alanine-bg"            # which pipeline runs it (see RUNNERS)
    description = "Boltzmann generator for alanine dipeptide"

    [system]                          # the runner's config tables, at full (paper) scale
    name = "alanine-dipeptide"
    [flow]
    ...
    [[stages]]
    ...
    [evaluation]
    ...

    [scale.quick]                     # presets: partial tables laid over the full config
    flow.n_layers = 2

``load_recipe(name_or_path, scale, overrides)`` resolves a shipped name (``boltzflow/recipes/NAME.toml``) or a
user's file, applies the preset and ``--set key=value`` overrides and returns a :class:`Recipe` whose ``config``
is the runner's dataclass; every unknown key or wrongly typed value is a :class:`~boltzflow.recipes.schema.
ConfigError` naming the key and the file. :func:`dump_recipe` writes the resolved recipe back as TOML
(``--print-config``; ``boltzflow run`` reads that output unchanged).
"""

from __future__ import annotations

import importlib
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from boltzflow.recipes.schema import ConfigError, build, merge, to_table

META_KEYS = ("name", "runner", "description", "scale")

# runner name -> module exposing ``Config`` (a dataclass) and ``run(out, config, *, seed, progress, force, command)``
RUNNERS: dict[str, str] = {
    "two-particle": "boltzflow.experiments.two_particle",
    "alanine-dihedrals": "boltzflow.experiments.alanine_dihedrals",
    "alanine-cartesian": "boltzflow.experiments.alanine_cartesian",
    "two-particle-bg": "boltzflow.experiments.two_particle_bg",
    "alanine-bg": "boltzflow.experiments.alanine_bg",
    "fisher-rao": "boltzflow.experiments.fisher_rao",  # paper 003: learned Boltzmann curves (issue 16)
    "model-baselines": "boltzflow.experiments.model_baselines",
    "bg": "boltzflow.experiments.bg",  # any registered system with an exact sampler or sample reference
    "smooth-flows": "boltzflow.experiments.smooth_flows",
    "cmt": "boltzflow.experiments.cmt",  # CMT and its baselines at one energy budget (cmt-* recipes)
}


class Recipe(NamedTuple):
    """A resolved recipe.

    Attributes:
        name: recipe name.
        runner: runner name (key of :data:`RUNNERS`).
        description: one line.
        scale: the preset applied ("full" = none).
        config: the runner's config dataclass.
        source: the file it came from.
    """

    name: str
    runner: str
    description: str
    scale: str
    config: Any
    source: str


def recipes_dir() -> Path:
    """Folder of the shipped recipes."""
    return Path(str(resources.files("boltzflow") / "recipes"))


def recipe_names() -> list[str]:
    """Names of the shipped recipes."""
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A shipped recipe's file, or the given file.

    Raises:
        ConfigError: neither a shipped name nor an existing file.
    """
    shipped = recipes_dir() / f"{name_or_path}.toml"
    if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.is_file():
        return shipped
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give a recipe .toml file or one of: {', '.join(recipe_names())}")
    raise ConfigError(f"no recipe {str(name_or_path)!r}; shipped recipes: {', '.join(recipe_names())}")


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a malformed file is one ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({type(err).__name__}: {err})") from None


def parse_override(item: str) -> dict[str, Any]:
    """``a.b.c=value`` as a nested table; the value is read as a TOML value, else as a plain string."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value (e.g. stages.0.epochs=5 or flow.hidden=[64,64])")
    key, raw = (s.strip() for s in item.split("=", 1))
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    table: dict[str, Any] = {}
    node = table
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return table


def _apply(table: dict[str, Any], update: dict[str, Any], where: str) -> dict[str, Any]:
    """Lay ``update`` over ``table``; list entries are addressed by index (``stages.1.epochs``)."""
    out = dict(table)
    for key, value in update.items():
        current = out.get(key)
        if isinstance(current, list) and isinstance(value, dict):
            items = list(current)
            for idx, sub in value.items():
                if not idx.isdigit() or int(idx) >= len(items):
                    raise ConfigError(f"{where}: {key}.{idx}: {key} has {len(items)} entries (0..{len(items) - 1})")
                items[int(idx)] = _apply(items[int(idx)], sub, where) if isinstance(sub, dict) else sub
            out[key] = items
        elif isinstance(current, dict) and isinstance(value, dict):
            out[key] = _apply(current, value, where)
        else:
            out[key] = value
    return out


def runner_module(runner: str, where: str = "recipe") -> Any:
    """The module of a runner name."""
    if runner not in RUNNERS:
        raise ConfigError(f"{where}: unknown runner {runner!r}; known runners: {', '.join(sorted(RUNNERS))}")
    return importlib.import_module(RUNNERS[runner])


def load_recipe(name_or_path: str | Path, scale: str = "full", overrides: list[str] | None = None) -> Recipe:
    """Resolve a recipe: file → preset ``scale`` → ``--set`` overrides → the runner's typed config.

    Raises:
        ConfigError: a malformed file, an unknown key, a wrongly typed value, an unknown scale or runner.
    """
    path = recipe_path(name_or_path)
    where = str(path)
    raw = read_toml(path)
    for key in ("name", "runner"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(f"{where}: needs a string {key!r} at the top")
    presets = raw.get("scale", {})
    if not isinstance(presets, dict):
        raise ConfigError(f"{where}: 'scale' must be a table of presets")
    body = {k: v for k, v in raw.items() if k not in META_KEYS}
    if scale != "full":
        if scale not in presets:
            raise ConfigError(f"{where}: no scale preset {scale!r}; it has: full, {', '.join(sorted(presets))}")
        body = _apply(body, presets[scale], f"{where} [scale.{scale}]")
    for item in overrides or []:
        body = _apply(body, parse_override(item), f"--set {item}")
    module = runner_module(raw["runner"], where)
    config = build(module.Config, body, where)
    return Recipe(raw["name"], raw["runner"], str(raw.get("description", "")), scale, config, where)


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as TOML (no presets: they are already applied; ``scale`` is recorded in a comment)."""
    import tomli_w

    head = {"name": recipe.name, "runner": recipe.runner, "description": recipe.description}
    text = tomli_w.dumps({**head, **to_table(recipe.config)})
    return f"# resolved from {recipe.source} at scale {recipe.scale!r}\n{text}"


__all__ = ["ConfigError", "Recipe", "RUNNERS", "dump_recipe", "load_recipe", "merge", "recipe_names"]
