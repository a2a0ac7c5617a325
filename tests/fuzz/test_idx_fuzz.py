"""Fuzz the IDX files a user points ``--dataset mnist:DIR`` at: a tiny valid MNIST-style
folder (24 training and 12 test images of 28 x 28, raw or gzip), one of its four files
damaged (a header byte changed, the dimensions set huge, the file cut or extended, the
labels out of range, the gzip stream cut), then ``dlsys train early-stopping`` on it. Each
case must run normally or end in one line naming the damaged file, exit 2, within the time
limit (see conftest.py)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dlsys.training.data import IDX_FILES

N_TRAIN, N_TEST, SIDE = 24, 12, 28


def _idx(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file: magic 0x0000 08 ndim, big-endian uint32 sizes, the bytes."""
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(np.uint8).tobytes()


def _folder_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        IDX_FILES["train_images"]: _idx(rng.integers(0, 256, (N_TRAIN, SIDE, SIDE))),
        IDX_FILES["train_labels"]: _idx(np.arange(N_TRAIN) % 10),
        IDX_FILES["test_images"]: _idx(rng.integers(0, 256, (N_TEST, SIDE, SIDE))),
        IDX_FILES["test_labels"]: _idx(np.arange(N_TEST) % 10),
    }


FILES = _folder_files()


OPS = ("byte", "dims", "cut", "extend", "label", "empty")


def _damage(data: bytes, op: str, x: int) -> bytes:
    """``data`` damaged by ``op``; ``x`` (any int >= 0) picks where and how."""
    if op == "byte":  # one header byte (magic, type, ndim, sizes) set to x mod 256
        at = x % min(len(data), 20)
        return data[:at] + bytes([x % 256]) + data[at + 1 :]
    if op == "dims":  # one dimension size replaced
        at = 4 + 4 * (x % data[3])
        return (
            data[:at] + struct.pack(">I", (0, 1, 2**31, 2**32 - 1, 10**6)[x % 5]) + data[at + 4 :]
        )
    if op == "cut":
        return data[: x % len(data)]
    if op == "extend":
        return data + bytes(1 + x % 64)
    if op == "label":  # the last byte: a label 10 or 255 (a pixel of an image file: valid)
        return data[:-1] + bytes([(10, 255)[x % 2]])
    return b""


def _write(folder: Path, files: dict[str, bytes], gz: str | None, cut_gz: int | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name == gz:
            blob = gzip.compress(data, mtime=0)
            if cut_gz is not None:
                blob = blob[: cut_gz % len(blob)]
            (folder / f"{name}.gz").write_bytes(blob)
        else:
            (folder / name).write_bytes(data)


TRAIN = ["train", "early-stopping", "--epochs", "1", "--model", "mlp:8", "--quiet"]


def test_the_undamaged_folder_trains(fuzz: Any, tmp_path: Path) -> None:
    _write(tmp_path, FILES, IDX_FILES["test_labels"], None)
    o = fuzz.run([*TRAIN, "--dataset", f"mnist:{tmp_path}"])
    assert o.code == 0, o.err


@settings(parent=settings.get_profile("dlsys-fuzz"), max_examples=30)
@given(
    name=st.sampled_from(sorted(FILES)),
    op=st.sampled_from(OPS),
    x=st.integers(0, 2**32),
    gz=st.booleans(),
    cut_gz=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_damaged_idx_files_end_cleanly(
    name: str, op: str, x: int, gz: bool, cut_gz: int | None, fuzz: Any, tmp_path_factory: Any
) -> None:
    files = {**FILES, name: _damage(FILES[name], op, x)}
    folder = tmp_path_factory.mktemp("idx")
    _write(folder, files, name if gz else None, cut_gz if gz else None)
    o = fuzz.run([*TRAIN, "--dataset", f"mnist:{folder}"])
    fuzz.check(o, name, "labels", "images", "--dataset")


def test_cut_gzip_stream_is_refused_naming_the_file(fuzz: Any, tmp_path: Path) -> None:
    """Found by this fuzz: a gzip file cut after its first 30 bytes raised EOFError (exit 1)
    from the header read."""
    name = IDX_FILES["train_images"]
    _write(tmp_path, FILES, name, 30)
    o = fuzz.run([*TRAIN, "--dataset", f"mnist:{tmp_path}"])
    assert o.code == 2, o.err
    assert o.err.startswith(f"dlsys: error: {tmp_path / name}.gz: cannot read IDX header"), o.err
