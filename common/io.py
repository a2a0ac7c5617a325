"""Atomic output and JSON conversion.

Outputs are never half-written: single files go to a temporary name in the same folder and are
renamed into place; a command's ``--out DIR`` is filled through :func:`output_dir`, which
stages every file in a sibling temporary folder and moves them into ``DIR`` only when the
command succeeded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    # NOTE: os.umask can only be read by setting it; restore it at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename; return the path.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask), not
    mkstemp's private 0600.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars and arrays, dataclasses, tuples, paths and sets to JSON types.

    Non-finite floats become ``None`` (JSON has no NaN); ints stay exact Python ints.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """JSON text of ``obj`` after :func:`to_jsonable`, keys in insertion order."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, dumps(obj) + "\n")


@contextlib.contextmanager
def output_dir(path: str | os.PathLike[str] | None) -> Iterator[Path | None]:
    """Stage a command's output files and publish them into ``path`` only on success.

    Yields a temporary folder beside ``path`` (``None`` when ``path`` is ``None``); on normal
    exit every file in it is moved into ``path`` (created if needed, existing files of the
    same name replaced); on an exception the staging folder is deleted and ``path`` is left
    as it was.
    """
    if path is None:
        yield None
        return
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise ValueError(f"--out: {str(final)!r} exists and is not a directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield stage
        if not final.exists():
            os.chmod(stage, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the results
            os.replace(stage, final)
            return
        for src in sorted(stage.rglob("*")):
            if src.is_dir():
                continue
            dst = final / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
