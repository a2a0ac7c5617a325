"""Data: IDX files the tests write, the built-in sets, the split, batching and OOD sets."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dlsys.training.data import (
    Batches,
    find_idx_files,
    load_dataset,
    load_idx_folder,
    read_idx,
    rotate,
    shift_up,
    train_val_split,
)


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding: magic 0x0000 08 ndim, big-endian uint32 sizes, then the bytes."""
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 12, gz: bool = False) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_in_torchvision_layout(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    tr_x, tr_y, te_x, te_y = load_idx_folder(tmp_path, "mnist")
    np.testing.assert_array_equal(tr_x, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(tr_y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(te_x, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(te_y, arrays["t10k-labels-idx1-ubyte"])


def test_flat_folder_and_fashion_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "flat")
    assert find_idx_files(tmp_path / "flat", "mnist")["train_images"].parent == tmp_path / "flat"
    write_mnist(tmp_path / "root" / "FashionMNIST" / "raw", gz=True)
    files = find_idx_files(tmp_path / "root", "fashion-mnist")
    assert files["test_labels"].name == "t10k-labels-idx1-ubyte.gz"


def test_load_dataset_from_idx_splits_8_to_2_and_scales(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, n_train=30, n_test=12)
    d = load_dataset(f"mnist:{tmp_path}", seed=3)
    # 30 training images: round(30 * 0.2) = 6 validation, 24 train; test untouched (12).
    assert d.sizes == {"train": 24, "val": 6, "test": 12}
    assert not d.stand_in
    assert d.train_x.dtype == torch.float32 and d.train_x.shape[1:] == (1, 28, 28)
    # Pixel 255 -> 1.0; the test set is the t10k file in order.
    expected = arrays["t10k-images-idx3-ubyte"][0] / 255.0
    np.testing.assert_allclose(d.test_x[0, 0].numpy(), expected, rtol=1e-6)


def test_missing_files_error_lists_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as exc:
        load_dataset(f"mnist:{tmp_path}")
    msg = str(exc.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "MNIST" / "raw") in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"mnist:{tmp_path / 'nope'}")


def test_bad_magic(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(p.read_bytes())
    raw[2] = 0x0D  # float type code instead of unsigned byte
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="bad IDX magic 0x00000d03"):
        load_idx_folder(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_data_is_rejected_before_reading(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, gz=gz)
    name = "t10k-images-idx3-ubyte" + (".gz" if gz else "")
    p = tmp_path / name
    data = gzip.decompress(p.read_bytes()) if gz else p.read_bytes()
    short = data[:-100]
    p.write_bytes(gzip.compress(short, mtime=0) if gz else short)
    # 16 header bytes + 12 * 28 * 28 = 9424 bytes needed, 9324 present.
    with pytest.raises(ValueError, match=r"truncated.*need 9424 bytes, file holds 9324"):
        load_idx_folder(tmp_path)


def test_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=30)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(ValueError, match=r"30 images but .* has 29 labels"):
        load_idx_folder(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_test=12)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(12, 11, np.uint8)))
    with pytest.raises(ValueError, match="label 11 out of range"):
        load_idx_folder(tmp_path)


def test_header_claiming_huge_size_is_rejected_without_allocation(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**16, 2**16))
    with pytest.raises(ValueError, match="claims"):
        read_idx(p, ndim=3)


def test_digits_is_a_labelled_stand_in_resized_to_28() -> None:
    d = load_dataset("digits", seed=0)
    # 1,797 images; every 6th (ceil(1797 / 6) = 300) is test; the other 1,497 split 8:2:
    # round(1497 * 0.2) = 299 validation, 1,198 train.
    assert d.sizes == {"train": 1198, "val": 299, "test": 300}
    assert d.input_shape == (1, 28, 28)
    assert d.stand_in and "STAND-IN" in d.note and "not MNIST" in d.note
    assert float(d.train_x.min()) >= 0.0 and float(d.train_x.max()) <= 1.0


def test_split_is_seeded_disjoint_and_test_fixed() -> None:
    tr, va = train_val_split(100, val_fraction=0.2, seed=5)
    assert len(tr) == 80 and len(va) == 20
    assert not set(tr) & set(va) and set(tr) | set(va) == set(range(100))
    tr2, _ = train_val_split(100, val_fraction=0.2, seed=5)
    tr3, _ = train_val_split(100, val_fraction=0.2, seed=6)
    np.testing.assert_array_equal(tr, tr2)
    assert not np.array_equal(tr, tr3)
    a, b = load_dataset("synthetic", seed=0), load_dataset("synthetic", seed=1)
    assert torch.equal(a.test_x, b.test_x)
    assert not torch.equal(a.train_x, b.train_x)


def test_batches_cover_each_sample_once_per_epoch_and_follow_schedule() -> None:
    x = torch.arange(10.0).reshape(10, 1)
    y = torch.arange(10)
    b = Batches(x, y, torch.Generator().manual_seed(0))
    sizes, seen = [], []
    for xb, yb in b.epoch(4):
        sizes.append(len(yb))
        seen += yb.tolist()
        assert torch.equal(xb[:, 0].long(), yb)
    assert sizes == [4, 4, 2] and sorted(seen) == list(range(10))
    # Schedule: batch 1 for the first two updates, then 3, capped at the 10 samples.
    sizes = [len(yb) for _, yb in b.epoch(lambda u: 1 if u < 2 else 3)]
    assert sizes == [1, 1, 3, 3, 2]
    # Same generator seed -> same order.
    o1 = [yb.tolist() for _, yb in Batches(x, y, torch.Generator().manual_seed(7)).epoch(3)]
    o2 = [yb.tolist() for _, yb in Batches(x, y, torch.Generator().manual_seed(7)).epoch(3)]
    assert o1 == o2


def test_shift_up_and_rotate_by_hand() -> None:
    x = torch.arange(9.0).reshape(1, 1, 3, 3)  # rows [0 1 2] [3 4 5] [6 7 8]
    assert shift_up(x, 1)[0, 0].tolist() == [[3, 4, 5], [6, 7, 8], [0, 0, 0]]
    assert shift_up(x, 3).abs().sum() == 0
    # Counter-clockwise 90 degrees: the right column becomes the top row.
    assert rotate(x, 90)[0, 0].tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]
    assert rotate(x, 180)[0, 0].tolist() == [[8, 7, 6], [5, 4, 3], [2, 1, 0]]
    assert torch.equal(rotate(rotate(x, 90), 270), x)
    with pytest.raises(ValueError, match="0, 90, 180 or 270"):
        rotate(x, 45)
    with pytest.raises(ValueError, match="shift"):
        shift_up(x, 4)


def test_unknown_dataset_suggests_nearest() -> None:
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(ValueError, match="needs a folder"):
        load_dataset("mnist")
