"""What kind of file a checkpoint is, read from its first bytes: a safetensors file or a pickle (raw, or a
``torch.save`` zip archive). Nothing is unpickled: the point is to refuse pickles before anything loads them.
"""

from __future__ import annotations

import zipfile
from pathlib import Path


def is_pickle(path: Path) -> bool:
    """True for a raw pickle or a ``torch.save`` zip archive (one holding a ``data.pkl``); nothing is unpickled."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        first = f.read(9)
    if looks_like_safetensors(path, first):
        return False
    if head.startswith(b"\x80"):
        return True
    if head != b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("data.pkl") for name in z.namelist())
    except zipfile.BadZipFile:
        return False


def looks_like_safetensors(path: Path, first: bytes) -> bool:
    """True when ``first`` (the file's first 9 bytes) is a safetensors header: a little-endian u64 length that
    fits in the file, then ``{``. Checked before the pickle magic because a header length whose low byte is
    0x80 starts with the pickle protocol byte."""
    if len(first) < 9 or first[8:9] != b"{":
        return False
    return 8 + int.from_bytes(first[:8], "little") <= path.stat().st_size
