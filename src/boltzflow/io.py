"""File input and output at the boundaries: atomic writes, pickle-free reads, one-line errors.

* writes are atomic (:func:`atomic_path`): a failed or killed job never leaves a half-written result behind;
* arrays are read from ``.npz`` without pickles (:func:`load_npz`, :func:`read_npz`) and tensors from
  safetensors files with a JSON header (:func:`read_safetensors`), so no file can run code when it is read;
* :func:`check_input_file` and :func:`check_output_file` validate paths before any expensive work, so a bad
  path is reported in one line and nothing is written.

safetensors (not ``torch.save``) is the tensor format because its reader only parses a JSON header and raw
buffers; torch's pickle-based format executes whatever a crafted file asks for.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from boltzflow.errors import BoltzflowError

SAFETENSORS_METADATA_KEY = "boltzflow"  # the JSON document stored in a safetensors file's __metadata__


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; give results the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_input_file(path: str | Path, what: str = "input file") -> Path:
    """``path`` as a Path if it is an existing regular file.

    Raises:
        BoltzflowError: missing, or a directory (the message names ``what`` and the path).
    """
    p = Path(path)
    if p.is_dir():
        raise BoltzflowError(f"{what} {p} is a directory; give a file")
    if not p.is_file():
        raise BoltzflowError(f"{what} not found: {p}")
    return p


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path if a file can be written there: not a directory, in an existing folder.

    Raises:
        BoltzflowError: ``path`` is a directory, or its folder is missing or not a folder.
    """
    p = Path(path)
    if p.is_dir():
        raise BoltzflowError(f"{option} {p} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise BoltzflowError(f"{option} {p}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise BoltzflowError(f"{option} {p}: folder {parent} does not exist; create it first")
    return p


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path if it is an existing folder or can be created as one (nothing is created here).

    Raises:
        BoltzflowError: ``path`` or one of its parents is an existing file.
    """
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            raise BoltzflowError(f"{option} {p}: {q} is a file, not a folder")
    return p


def save_npz(path: str | Path, **arrays: Any) -> None:
    """Write an ``.npz`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path: str | Path | BinaryIO, keys: tuple[str, ...] | list[str] | None = None) -> dict[str, np.ndarray]:
    """Read an ``.npz`` into a dict of arrays and close the file before returning (no pickles).

    Args:
        path: the ``.npz`` file, or a binary file object opened on it (left open).
        keys: arrays to read (all when None); a missing key raises ``KeyError`` naming it.
    """
    if hasattr(path, "read"):  # an open binary file: the caller closes it
        return _read_npz_handle(path, keys, getattr(path, "name", "npz file"))
    with open(path, "rb") as fh:  # our handle: closed even if np.load fails
        return _read_npz_handle(fh, keys, path)


def _read_npz_handle(fh: Any, keys: tuple[str, ...] | list[str] | None, path: Any) -> dict[str, np.ndarray]:
    with np.load(fh, allow_pickle=False) as f:
        names = f.files if keys is None else list(keys)
        missing = [k for k in names if k not in f.files]
        if missing:
            raise KeyError(f"{path} lacks arrays {missing}; it has {f.files}")
        return {k: np.array(f[k]) for k in names}


def read_npz(path: str | Path, what: str = "data file") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, with a one-line error for anything that is not a readable npz.

    Empty, truncated and non-zip files, pickled (object) arrays and directories all raise
    :class:`~boltzflow.errors.BoltzflowError` naming ``what`` and the path; no pickle is ever loaded.
    """
    p = check_input_file(path, what)
    if p.stat().st_size == 0:
        raise BoltzflowError(f"{what} {p} is empty")
    try:
        return load_npz(p)
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise BoltzflowError(f"{what} {p} holds pickled (object) arrays, which are not read; save plain "
                                 "numeric arrays") from None
        raise BoltzflowError(f"cannot read {what} {p} as npz: {_one_line(err)}") from None
    except (TypeError, AttributeError):  # np.load gave a plain array: an .npy file, not an npz archive
        raise BoltzflowError(f"{what} {p} is not an npz archive (a single .npy array?); save it with np.savez") \
            from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise BoltzflowError(f"cannot read {what} {p} as npz ({type(err).__name__}: file corrupt or truncated?)") \
            from None


def read_configurations(path: str | Path, dim: int | None = None, event_shape: tuple[int, ...] | None = None,
                        what: str = "data file") -> np.ndarray:
    """Configurations from an npz as a float64 array of shape (n, dim), with one-line errors.

    Reads the array ``x`` of shape (n, dim); failing that, for molecules, ``xyz`` of shape (n, *event_shape)
    (positions in nm, as ``boltzflow sample`` and ``boltzflow simulate`` write them), flattened to (n, dim).

    Args:
        path: the ``.npz`` file.
        dim: expected width D (None: any).
        event_shape: the system's shape of one configuration, e.g. (22, 3), when ``xyz`` may stand in for ``x``.
        what: how the file is named in messages.

    Raises:
        BoltzflowError: unreadable, no suitable array, wrong shape, non-numeric dtype, no rows, NaN or inf.
    """
    arrays = read_npz(path, what)
    use_xyz = event_shape is not None and len(event_shape) > 1 and (dim is None or int(np.prod(event_shape)) == dim)
    x_shape = f"(n, {dim if dim is not None else 'D'})"
    xyz_shape = f"(n, {', '.join(map(str, event_shape))})" if use_xyz else ""
    x = arrays.get("x")
    if x is not None and x.ndim == 2 and (dim is None or x.shape[1] == dim):
        name, a = "x", x
    elif use_xyz and "xyz" in arrays:
        name, a = "xyz", arrays["xyz"]
        if a.ndim != len(event_shape) + 1 or tuple(a.shape[1:]) != tuple(event_shape):
            raise BoltzflowError(f"{what} {path}: xyz must have shape {xyz_shape} (nm), got {a.shape}")
    elif x is not None:
        also = f" (or give xyz of shape {xyz_shape}, nm)" if use_xyz else ""
        raise BoltzflowError(f"{what} {path}: x must have shape {x_shape}{also}, got {x.shape}")
    else:
        also = f" or 'xyz' of shape {xyz_shape} (nm)" if use_xyz else ""
        raise BoltzflowError(f"{what} {path} has no array 'x' of shape {x_shape}{also} (found {sorted(arrays)})")
    if a.dtype.kind not in "fiu":
        raise BoltzflowError(f"{what} {path}: {name} must hold real numbers, got dtype {a.dtype}")
    if len(a) == 0:
        raise BoltzflowError(f"{what} {path}: {name} has no rows")
    x = a.reshape(len(a), -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise BoltzflowError(f"{what} {path}: {name} contains {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x


def save_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (indented, NaN written as null is not attempted: keep values finite)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def save_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write tensors and a JSON document (``metadata``) to a safetensors file, atomically.

    Args:
        path: output file.
        tensors: name -> tensor (any device; copied to contiguous CPU tensors, so shared storage is fine).
        metadata: JSON-serialisable dict (NumPy scalars, arrays and tensors become numbers and lists).
    """
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {SAFETENSORS_METADATA_KEY: json.dumps(metadata, default=_jsonable)}
    data = save(flat, metadata=header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_safetensors(path: str | Path, what: str = "file") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the JSON document of a file written by :func:`save_safetensors` (CPU tensors).

    Raises:
        BoltzflowError: missing, a directory, not a safetensors file, truncated, or without a JSON document.
    """
    from safetensors.torch import load

    p = check_input_file(path, what)
    data = p.read_bytes()
    header = safetensors_header(data)
    if header is None:
        raise BoltzflowError(f"cannot read {what} {p}: not a safetensors file (corrupt or truncated?)")
    raw = (header.get("__metadata__") or {}).get(SAFETENSORS_METADATA_KEY)
    try:
        metadata = json.loads(raw) if isinstance(raw, str) else None
        tensors = load(data)
    except Exception as err:  # the safetensors parser raises its own error types for damaged buffers
        raise BoltzflowError(f"cannot read {what} {p}: {type(err).__name__} (file corrupt or truncated?)") from None
    if not isinstance(metadata, dict):
        raise BoltzflowError(f"{p} is a safetensors file without a boltzflow header; it is not a boltzflow {what}")
    return tensors, metadata


def safetensors_header(data: bytes) -> dict[str, Any] | None:
    """The JSON header of safetensors bytes, or None when ``data`` is not a complete safetensors file."""
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if n == 0 or n > len(data) - 8 or data[8:9] != b"{":
        return None
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
               and "data_offsets" in v), default=0)
    return header if 8 + n + end <= len(data) else None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
