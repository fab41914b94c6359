"""Checkpoints without pickle: tensors in safetensors, everything else in a JSON document in the same file.

A checkpoint is one safetensors file (any suffix; new runs write ``.safetensors``). Its ``__metadata__`` holds a
JSON document ``{"format": "boltzflow-checkpoint", "version": 2, "fields": {...}, "optimizer": {...}}``:
``fields`` are the flow spec, the system, the training config and history, the data fingerprint (sha256) and
whatever the caller adds; tensors are stored under ``model/``, ``best_model/``, ``optimizer/``, ``rng/``
(generator states as uint8) and ``source/`` (a replay buffer's content). Reading parses a JSON header and raw
buffers only, so a crafted file cannot run code.

Format version 1 was a ``torch.save`` pickle; such files are refused with a one-line message. A user who trusts
one converts it with ``python -m boltzflow.training.checkpoint OLD.pt NEW.safetensors``; even that reads the
pickle with ``torch.load(weights_only=True)`` and an allow-list of the NumPy types of the old RNG state only.

Shipped models (``boltzflow/data/<name>.safetensors``) are found by name: :func:`resolve_checkpoint`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from boltzflow.errors import BoltzflowError
from boltzflow.flows.flow import Flow
from boltzflow.flows.spec import build_flow
from boltzflow.io import check_input_file, read_safetensors, save_safetensors
from boltzflow.training.config import TrainConfig
from boltzflow.training.file_format import is_pickle
from boltzflow.training.sources import Generators, Source

FORMAT = "boltzflow-checkpoint"
VERSION = 2
TENSOR_GROUPS = ("model", "best_model", "rng", "source")
STATE_KEYS = ("epoch", "step", "history", "best_val", "best_epoch", "skipped")  # the loop's progress


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically.

    Args:
        path: output file.
        payload: ``model`` (state dict, required), optionally ``best_model`` (state dict or None),
            ``optimizer`` (an optimiser state dict), ``rng`` and ``source`` (name -> tensor); every other entry
            must be JSON-serialisable (tensors and arrays inside it become lists).
    """
    if "model" not in payload:
        raise ValueError("a checkpoint needs the model's state dict under 'model'")
    tensors: dict[str, torch.Tensor] = {}
    for group in TENSOR_GROUPS:
        for key, value in (payload.get(group) or {}).items():
            tensors[f"{group}/{key}"] = value
    fields = {k: v for k, v in payload.items() if k not in (*TENSOR_GROUPS, "optimizer")}
    doc = {"format": FORMAT, "version": VERSION, "fields": fields, "has_best_model": payload.get("best_model")
           is not None, "optimizer": None}
    if payload.get("optimizer") is not None:
        doc["optimizer"] = _flatten_optimizer(payload["optimizer"], tensors)
    save_safetensors(path, tensors, doc)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint: ``{**fields, "format", "version", "model", "best_model", "optimizer",
    "rng", "source"}`` with state dicts of CPU tensors (``best_model`` and ``optimizer`` may be None).

    Raises:
        BoltzflowError: missing, unreadable, an old pickle checkpoint, or not a boltzflow checkpoint.
    """
    path = check_input_file(path, "checkpoint")
    if is_pickle(path):
        raise BoltzflowError(
            f"{path} is an old pickle checkpoint (format v1), which boltzflow no longer loads because unpickling "
            f"can run code; if you trust the file, convert it with: python -m boltzflow.training.checkpoint "
            f"{path} NEW.safetensors"
        )
    tensors, doc = read_safetensors(path, "checkpoint")
    if doc.get("format") != FORMAT or not isinstance(doc.get("fields"), dict):
        raise BoltzflowError(f"{path} is not a boltzflow checkpoint (expected format {FORMAT})")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BoltzflowError(f"{path} has checkpoint format version {version}; this boltzflow reads <= {VERSION}")
    groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in (*TENSOR_GROUPS, "optimizer")}
    for name, tensor in tensors.items():
        group, _, key = name.partition("/")
        if group not in groups or not key:
            raise BoltzflowError(f"{path} is not a boltzflow checkpoint (unexpected tensor {name!r})")
        groups[group][key] = tensor
    fields = doc["fields"]
    if not groups["model"]:
        raise BoltzflowError(f"{path} is not a boltzflow checkpoint (it holds no weights)")
    optimizer = None if doc.get("optimizer") is None else _unflatten_optimizer(doc["optimizer"], groups["optimizer"])
    return {**fields, "format": FORMAT, "version": version, "model": groups["model"],
            "best_model": groups["best_model"] if doc.get("has_best_model") else None, "optimizer": optimizer,
            "rng": groups["rng"], "source": groups["source"]}


def load_flow(path: str | Path, which: str = "best") -> tuple[Flow, dict[str, Any]]:
    """Rebuild the flow stored in a checkpoint (a path, or the name of a shipped model).

    Args:
        path: checkpoint file, or a shipped model's name (:func:`shipped_models`).
        which: "best" (best validation weights, the default) or "last".

    Returns:
        ``(flow in eval mode, checkpoint dict)``.
    """
    path = resolve_checkpoint(path)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt.get("flow_spec"), dict):
        raise BoltzflowError(f"checkpoint {path} holds no flow spec, so its flow cannot be rebuilt")
    try:
        flow = build_flow(ckpt["flow_spec"])
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise BoltzflowError(f"checkpoint {path}: cannot build its flow ({' '.join(str(err).split())})") from None
    state = ckpt["best_model"] if which == "best" and ckpt["best_model"] is not None else ckpt["model"]
    try:
        flow.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise BoltzflowError(f"checkpoint {path}: weights do not match its flow spec ({first})") from None
    return flow.eval(), ckpt


def save_training_state(path: Path, flow: Flow, opt: torch.optim.Optimizer, gens: Generators, source: Source,
                        cfg: TrainConfig, stage: str, state: dict[str, Any], extra: dict[str, Any],
                        other_ranks: dict[str, torch.Tensor] | None = None) -> None:
    """Checkpoint a training stage: weights, optimiser, the loop's generators (and the global one it forked),
    the source's state and fingerprint, the config and the loop's progress (``state``); in data-parallel
    training also the other ranks' generator states (``other_ranks``: ``"samples@R"``, ``"global@R"``)."""
    rng = {"shuffle": gens.shuffle.get_state(), "samples": gens.samples.get_state(), "global": torch.get_rng_state(),
           **(other_ranks or {})}
    save_checkpoint(path, {
        **extra, "stage": stage, "train_config": asdict(cfg), "data_fingerprint": source.fingerprint(),
        "model": flow.state_dict(), "optimizer": opt.state_dict(), "rng": rng, "source": source.state_dict(),
        **{k: state[k] for k in (*STATE_KEYS, "best_model")},
    })


def restore_training_state(path: Path, flow: Flow, opt: torch.optim.Optimizer, gens: Generators, source: Source,
                           cfg: TrainConfig, flow_spec: dict[str, Any] | None) -> dict[str, Any]:
    """Load what :func:`save_training_state` wrote into the live objects and return the loop's progress.

    Raises:
        BoltzflowError: no training state, another architecture, other settings (``epochs`` may grow), other
            data or another source (by fingerprint), or weights that do not fit.
    """
    ckpt = read_checkpoint(path)
    saved = ckpt.get("train_config")
    if saved is None or ckpt["optimizer"] is None or not {"shuffle", "samples", "global"} <= set(ckpt["rng"]):
        raise BoltzflowError(f"{path} holds no training state to resume from; use a new output folder")
    if flow_spec is not None and ckpt.get("flow_spec") != flow_spec:
        raise BoltzflowError(f"checkpoint {path} holds a different flow architecture; use a new output folder")
    differs = {k for k, v in asdict(cfg).items() if saved.get(k) != v and k != "epochs"}
    if differs:
        raise BoltzflowError(f"checkpoint {path} was written with different training settings ({sorted(differs)}); "
                             "use a new output folder or the same settings")
    if ckpt.get("data_fingerprint") != source.fingerprint():
        raise BoltzflowError(f"checkpoint {path} was trained on other data or another batch source "
                             f"({_describe(ckpt.get('data_fingerprint'))}, now {_describe(source.fingerprint())}); "
                             "use a new output folder or the original data")
    try:
        flow.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        source.load_state_dict(ckpt["source"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BoltzflowError(f"checkpoint {path} does not match this model: {first}") from None
    gens.shuffle.set_state(ckpt["rng"]["shuffle"])
    gens.samples.set_state(ckpt["rng"]["samples"])
    torch.set_rng_state(ckpt["rng"]["global"])  # the loop runs inside fork_rng: the caller's state comes back
    best = ckpt["best_model"]
    if best is not None:
        live = flow.state_dict()
        best = {k: v.to(live[k].device) for k, v in best.items()}
    return {**{k: ckpt[k] for k in STATE_KEYS}, "best_model": best}


def _describe(fingerprint: Any) -> str:
    if isinstance(fingerprint, dict) and "sha256" in fingerprint:
        return f"sha256 {str(fingerprint['sha256'])[:12]}..., shape {fingerprint.get('shape')}"
    return str(fingerprint)


def shipped_models() -> dict[str, Path]:
    """Models shipped with the package, by name: ``boltzflow/data/<name>.safetensors``."""
    data = resources.files("boltzflow") / "data"
    return {Path(p.name).stem: Path(str(p)) for p in data.iterdir() if p.name.endswith(".safetensors")}


def resolve_checkpoint(spec: str | Path) -> Path:
    """A checkpoint path: ``spec`` itself when it exists, else the shipped model of that name.

    Raises:
        BoltzflowError: neither a file nor a shipped model's name (the message lists the shipped names).
    """
    p = Path(spec)
    if p.exists():
        return check_input_file(p, "checkpoint")
    shipped = shipped_models()
    if str(spec) in shipped:
        return shipped[str(spec)]
    names = ", ".join(sorted(shipped)) or "none"
    raise BoltzflowError(f"checkpoint not found: {p} (it is no file, nor a shipped model: {names})")


def _flatten_optimizer(state_dict: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """JSON part of an optimiser state dict; its tensors go into ``tensors`` as ``optimizer/<param>/<name>``."""
    state: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        state[str(idx)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{idx}/{name}"] = value
                state[str(idx)][name] = {"tensor": True}
            else:
                state[str(idx)][name] = {"value": value}
    return {"param_groups": state_dict["param_groups"], "state": state}


def _unflatten_optimizer(doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {
        int(idx): {name: tensors[f"{idx}/{name}"] if v.get("tensor") else v["value"] for name, v in entry.items()}
        for idx, entry in doc["state"].items()
    }
    return {"state": state, "param_groups": doc["param_groups"]}


def convert_legacy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Convert a format-v1 (``torch.save``) checkpoint you trust to the safetensors format, for sampling.

    The pickle is read with ``torch.load(weights_only=True)`` (no arbitrary code) and an allow-list of the NumPy
    types of the old global RNG state. The result keeps the weights, the flow spec, the system and the history,
    but no optimiser or generator state: it samples and evaluates, it does not resume training.

    Raises:
        BoltzflowError: unreadable, or holding objects outside the allow-list.
    """
    import numpy as np
    from numpy._core.multiarray import _reconstruct  # what NumPy 2 pickles an array as

    src = check_input_file(src, "checkpoint")
    allowed = [np.ndarray, np.dtype, np.dtypes.UInt32DType, _reconstruct]
    try:
        with torch.serialization.safe_globals(allowed):
            old = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  any failure of the restricted unpickler means: not converted
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BoltzflowError(f"{src} was not converted: it is not a plain-data torch checkpoint ({first})") from None
    if not isinstance(old, dict) or "flow_spec" not in old or "model" not in old:
        raise BoltzflowError(f"{src} was not converted: it is not a boltzflow checkpoint")
    keep = {k: v for k, v in old.items() if k not in ("optimizer", "rng", "format", "train_config")}
    save_checkpoint(dst, {**keep, "converted_from": f"{Path(src).name} (format v1)"})


def main(argv: list[str] | None = None) -> int:
    """``python -m boltzflow.training.checkpoint OLD.pt NEW.safetensors``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m boltzflow.training.checkpoint OLD.pt NEW.safetensors", file=sys.stderr)
        return 2
    try:
        convert_legacy_checkpoint(args[0], args[1])
    except BoltzflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
