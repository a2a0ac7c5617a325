"""Data sets for the training experiments, held as tensors on the device.

Every data set comes out as a :class:`Splits`: float32 images of shape ``(N, C, H, W)`` with
pixel values in [0, 1] and int64 labels, split into train / validation / test. The test set
is fixed by the data set (MNIST's ``t10k`` files, a fixed slice of the built-in sets) and is
never touched by the seeded train/validation split.

Sources (the ``--dataset`` spec):

- ``mnist:DIR`` / ``fashion-mnist:DIR`` read the four IDX files (raw or ``.gz``) from
  torchvision's layout ``DIR/MNIST/raw/...`` (``DIR/FashionMNIST/raw/...``), from ``DIR/raw``
  or from ``DIR`` itself. Headers, sizes and label counts are checked before the data is
  allocated; nothing is downloaded.
- ``digits`` (the default) is scikit-learn's 8x8 digits (1,797 images) resized to 28x28 by
  bilinear interpolation so every model runs unchanged. It is a *stand-in* for MNIST and every
  report says so.
- ``synthetic`` is a small generated 10-class set of 28x28 images (noisy class templates) for
  tests.

Batches come from :class:`Batches`, which indexes the device-resident tensors with a seeded
permutation (no DataLoader, no worker processes). :func:`shift_up` and :func:`rotate` build the
out-of-distribution test sets.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlsys.common.errors import check_int, unknown_name

__all__ = [
    "DATASETS",
    "IDX_FILES",
    "Batches",
    "Splits",
    "digits",
    "find_idx_files",
    "load_dataset",
    "load_idx_folder",
    "read_idx",
    "rotate",
    "shift_up",
    "synthetic",
    "train_val_split",
]

#: Names accepted by :func:`load_dataset` (``mnist`` and ``fashion-mnist`` take ``:DIR``).
DATASETS = ("digits", "synthetic", "mnist", "fashion-mnist")

#: The four IDX files of MNIST and FashionMNIST (without the optional ``.gz``).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# torchvision's folder name per data set.
_TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# IDX type code 0x08 = unsigned byte, the only type MNIST and FashionMNIST use.
_IDX_UBYTE = 0x08
# No MNIST-like image set has more than this many elements per file (60,000 * 28 * 28 is 47M).
_MAX_IDX_ELEMENTS = 2**31 - 1


@dataclass
class Splits:
    """A data set split into train / validation / test tensors on one device.

    Images are float32 ``(N, C, H, W)`` in [0, 1]; labels are int64 ``(N,)`` in
    ``[0, num_classes)``. ``stand_in`` is set for the built-in sets so reports can say that the
    numbers are not MNIST's.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int = 10
    stand_in: bool = False
    note: str = ""
    sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sizes = {
            "train": int(self.train_x.shape[0]),
            "val": int(self.val_x.shape[0]),
            "test": int(self.test_x.shape[0]),
        }

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image (elements)."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def describe(self) -> dict[str, object]:
        """A JSON-ready description for reports (name, sizes, shape, stand-in note)."""
        return {
            "name": self.name,
            "sizes": dict(self.sizes),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "stand_in": self.stand_in,
            "note": self.note,
        }


# ----------------------------------------------------------------------------- IDX files


def _open_idx(path: Path) -> tuple[object, int | None]:
    """Open an IDX file (``.gz`` or raw); return the stream and its uncompressed size in bytes.

    For gzip the size is the ISIZE trailer (RFC 1952: uncompressed size mod 2**32), read
    without decompressing anything.
    """
    if path.suffix == ".gz":
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 18:
                raise ValueError(f"{path}: corrupt gzip file (only {fh.tell()} bytes)")
            fh.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", fh.read(4))[0]
        try:
            stream = gzip.open(path, "rb")
            stream.peek(1)
        except (OSError, EOFError) as exc:  # EOFError: the gzip stream is cut short
            raise ValueError(f"{path}: not a valid gzip file ({exc})") from None
        return stream, isize
    return open(path, "rb"), path.stat().st_size


def read_idx(
    path: str | os.PathLike[str], *, ndim: int, max_elements: int = _MAX_IDX_ELEMENTS
) -> np.ndarray:
    """Read an unsigned-byte IDX file (raw or ``.gz``) with ``ndim`` dimensions.

    The header (magic ``0x0000 08 ndim``, then ``ndim`` big-endian uint32 sizes) and the file
    size are checked before the data array is allocated; a wrong magic, a truncated or
    over-long file raises ``ValueError`` naming the file. Returns a uint8 array.
    """
    p = Path(path)
    stream, size = _open_idx(p)
    with stream:  # type: ignore[attr-defined]
        try:
            magic = stream.read(4)  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:
            raise ValueError(f"{p}: cannot read IDX header ({exc})") from None
        if len(magic) < 4:
            raise ValueError(f"{p}: truncated IDX header ({len(magic)} of 4 magic bytes)")
        if magic[0] != 0 or magic[1] != 0 or magic[2] != _IDX_UBYTE or magic[3] != ndim:
            raise ValueError(
                f"{p}: bad IDX magic 0x{magic.hex()}; expected 0x0000{_IDX_UBYTE:02x}{ndim:02x} "
                f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
            )
        try:
            raw_dims = stream.read(4 * ndim)  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:
            raise ValueError(f"{p}: cannot read IDX header ({exc})") from None
        if len(raw_dims) < 4 * ndim:
            raise ValueError(f"{p}: truncated IDX header (dimension sizes missing)")
        dims = struct.unpack(f">{ndim}I", raw_dims)
        count = math.prod(int(d) for d in dims)  # exact Python int: no int64 overflow
        if count > max_elements:
            raise ValueError(
                f"{p}: IDX header claims {count} elements (dims {list(dims)}); "
                f"at most {max_elements} allowed"
            )
        expected = 4 + 4 * ndim + count
        if size is not None:
            # For gzip the trailer holds the size modulo 2**32.
            actual = size
            want = expected % 2**32 if p.suffix == ".gz" else expected
            if actual != want:
                kind = "truncated" if actual < want else "longer than its header says"
                raise ValueError(
                    f"{p}: IDX data {kind}: header dims {list(dims)} need {expected} bytes, "
                    f"file holds {actual}"
                )
        try:
            data = stream.read(count)  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:
            raise ValueError(f"{p}: corrupt IDX data ({exc})") from None
        if len(data) != count:
            raise ValueError(
                f"{p}: IDX data truncated: header dims {list(dims)} need {count} data bytes, "
                f"got {len(data)}"
            )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _idx_candidates(folder: Path, name: str) -> list[Path]:
    sub = _TORCHVISION_FOLDER.get(name)
    dirs = [folder / sub / "raw"] if sub else []
    dirs += [folder / "raw", folder]
    return dirs


def find_idx_files(folder: str | os.PathLike[str], name: str = "mnist") -> dict[str, Path]:
    """Locate the four IDX files of ``name`` under ``folder``.

    Looks in ``folder/<MNIST|FashionMNIST>/raw`` (torchvision's layout), ``folder/raw`` and
    ``folder``, for each file raw or ``.gz``; the first folder holding all four wins. Raises
    ``FileNotFoundError`` listing every path looked for.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"--dataset {name}: folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"--dataset {name}: {str(root)!r} is not a folder")
    looked: list[str] = []
    for d in _idx_candidates(root, name):
        found: dict[str, Path] = {}
        for key, stem in IDX_FILES.items():
            for cand in (d / stem, d / f"{stem}.gz"):
                looked.append(str(cand))
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == len(IDX_FILES):
            return found
    raise FileNotFoundError(
        f"--dataset {name}: no complete set of IDX files under {str(root)!r}; looked for: "
        + ", ".join(looked)
    )


def load_idx_folder(
    folder: str | os.PathLike[str], name: str = "mnist"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read MNIST-style IDX files; return ``(train_images, train_labels, test_images,
    test_labels)`` as uint8 arrays (images ``(N, H, W)``).

    Image and label counts must agree and labels must lie in 0..9 (``ValueError`` otherwise).
    """
    files = find_idx_files(folder, name)
    # Check both headers of each pair before reading any pixel data.
    for split in ("train", "test"):
        n_img = _idx_count(files[f"{split}_images"], 3)
        n_lab = _idx_count(files[f"{split}_labels"], 1)
        if n_img != n_lab:
            raise ValueError(
                f"{files[f'{split}_images']}: {n_img} images but "
                f"{files[f'{split}_labels']} has {n_lab} labels; counts must match"
            )
    out = []
    for split in ("train", "test"):
        x = read_idx(files[f"{split}_images"], ndim=3)
        y = read_idx(files[f"{split}_labels"], ndim=1)
        if y.size and int(y.max()) > 9:
            raise ValueError(
                f"{files[f'{split}_labels']}: label {int(y.max())} out of range; "
                "MNIST-style labels are 0..9"
            )
        out += [x, y]
    return out[0], out[1], out[2], out[3]


def _idx_count(path: Path, ndim: int) -> int:
    """The first dimension (number of items) from an IDX header, after checking the magic."""
    stream, _ = _open_idx(path)
    with stream:  # type: ignore[attr-defined]
        try:
            head = stream.read(8)  # type: ignore[attr-defined]
        except (OSError, EOFError) as exc:  # a gzip stream cut short
            raise ValueError(f"{path}: cannot read IDX header ({exc})") from None
    if len(head) < 8:
        raise ValueError(f"{path}: truncated IDX header ({len(head)} of 8 bytes)")
    if head[0] != 0 or head[1] != 0 or head[2] != _IDX_UBYTE or head[3] != ndim:
        raise ValueError(
            f"{path}: bad IDX magic 0x{head[:4].hex()}; expected 0x0000{_IDX_UBYTE:02x}{ndim:02x}"
        )
    return int(struct.unpack(">I", head[4:8])[0])


# ----------------------------------------------------------------------------- built-in sets


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits resized to 28x28: float32 images ``(1797, 1, 28, 28)`` in [0, 1]
    and int64 labels. A stand-in for MNIST, not MNIST."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return x.numpy(), d.target.astype(np.int64)


def synthetic(
    n: int = 600,
    *,
    num_classes: int = 10,
    size: int = 28,
    channels: int = 1,
    seed: int = 1234,
    template_seed: int = 99,
) -> tuple[np.ndarray, np.ndarray]:
    """A generated ``num_classes``-class image set: each class is a fixed random blob pattern
    (drawn from ``template_seed``), each image that pattern plus Gaussian noise (sigma 0.5,
    drawn from ``seed``), clipped to [0, 1].

    Returns float32 images ``(n, channels, size, size)`` and int64 labels cycling
    0, 1, ..., num_classes - 1. The same arguments give the same bytes.
    """
    coarse = np.random.default_rng(template_seed).random((num_classes, channels, 7, 7))
    templates = F.interpolate(
        torch.from_numpy(coarse.astype(np.float32)), size=(size, size), mode="bilinear"
    )
    y = np.arange(n, dtype=np.int64) % num_classes
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.5, size=(n, channels, size, size)).astype(np.float32)
    x = np.clip(templates.numpy()[y] + noise, 0.0, 1.0).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------- splitting


def train_val_split(n: int, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into train and validation indices (sorted).

    ``round(n * val_fraction)`` items go to validation (8:2 is ``val_fraction=0.2``).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: must be in (0, 1), got {val_fraction!r}")
    n_val = round(n * val_fraction)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"val_fraction: {val_fraction} of {n} items leaves an empty split")
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _parse_spec(spec: str) -> tuple[str, str | None]:
    name, sep, folder = spec.partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    if name in _TORCHVISION_FOLDER:
        if not sep or not folder:
            raise ValueError(f"--dataset {name}: needs a folder, e.g. '{name}:~/data'")
        return name, os.path.expanduser(folder)
    if sep:
        raise ValueError(f"--dataset {name}: takes no folder (got {spec!r})")
    return name, None


def load_dataset(
    spec: str = "digits",
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    device: str | torch.device = "cpu",
    limit: int | None = None,
) -> Splits:
    """Load ``spec`` (``digits``, ``synthetic``, ``mnist:DIR`` or ``fashion-mnist:DIR``).

    The training part is split into train/validation by ``seed`` (``val_fraction`` to
    validation); the test part is fixed. ``limit`` keeps only the first ``limit`` training
    images before splitting (and at most ``limit`` test images), for quick runs.
    """
    name, folder = _parse_spec(spec)
    if limit is not None and (isinstance(limit, bool) or int(limit) < 2):
        raise ValueError(f"limit: must be an integer >= 2, got {limit!r}")
    stand_in = False
    note = ""
    if name == "digits":
        x, y = digits()
        # The test set is fixed (every 6th image, 300 of 1797) whatever the seed.
        test_mask = np.arange(len(y)) % 6 == 0
        x_tr, y_tr, x_te, y_te = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
        stand_in = True
        note = (
            "STAND-IN DATA: scikit-learn's 8x8 digits (1,797 images) resized to 28x28, "
            "not MNIST; use --dataset mnist:DIR for the real set"
        )
    elif name == "synthetic":
        x_tr, y_tr = synthetic(600, seed=1234)
        x_te, y_te = synthetic(200, seed=4321)
        stand_in = True
        note = "SYNTHETIC DATA: generated 10-class templates plus noise, for tests only"
    else:
        assert folder is not None
        tr_i, tr_l, te_i, te_l = load_idx_folder(folder, name)
        x_tr = tr_i.astype(np.float32)[:, None] / 255.0
        x_te = te_i.astype(np.float32)[:, None] / 255.0
        y_tr, y_te = tr_l.astype(np.int64), te_l.astype(np.int64)
    if limit is not None:
        x_tr, y_tr = x_tr[: int(limit)], y_tr[: int(limit)]
        x_te, y_te = x_te[: int(limit)], y_te[: int(limit)]
    tr, va = train_val_split(len(y_tr), val_fraction=val_fraction, seed=seed)
    dev = torch.device(device)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    return Splits(
        name=spec if folder is None else f"{name}:{folder}",
        train_x=t(x_tr[tr]),
        train_y=t(y_tr[tr]),
        val_x=t(x_tr[va]),
        val_y=t(y_tr[va]),
        test_x=t(x_te),
        test_y=t(y_te),
        num_classes=10,
        stand_in=stand_in,
        note=note,
    )


# ----------------------------------------------------------------------------- batching


class Batches:
    """Mini-batches of device-resident ``(x, y)`` indexed by a seeded permutation.

    Each call of :meth:`epoch` draws a fresh permutation from ``generator`` (a CPU
    ``torch.Generator`` whose state goes into checkpoints) and yields consecutive slices of it.
    ``batch_size`` may be an int or a callable ``updates -> int`` (a batch-size schedule read
    before every update; ``updates`` counts updates made so far). The last batch of an epoch
    may be smaller. Sizes are clipped to the number of samples.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        self.x = x
        self.y = y
        self.generator = generator

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def epoch(
        self, batch_size: int | Callable[[int], int], updates: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield one epoch of batches. See the class docstring for ``batch_size``."""
        n = len(self)
        perm = torch.randperm(n, generator=self.generator).to(self.x.device)
        start = 0
        done = updates
        while start < n:
            bs = batch_size(done) if callable(batch_size) else int(batch_size)
            bs = max(1, min(int(bs), n))
            idx = perm[start : start + bs]
            start += bs
            done += 1
            yield self.x.index_select(0, idx), self.y.index_select(0, idx)


# ----------------------------------------------------------------------------- OOD sets


def shift_up(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Move images ``(N, C, H, W)`` up by ``pixels`` rows; the rows freed at the bottom are 0
    (the background). ``pixels`` must be in ``[0, H]``."""
    h = x.shape[-2]
    check_int("shift", pixels, minimum=0, maximum=h)
    out = torch.zeros_like(x)
    if pixels < h:
        out[..., : h - pixels, :] = x[..., pixels:, :]
    return out


def rotate(x: torch.Tensor, degrees: int) -> torch.Tensor:
    """Rotate images ``(N, C, H, W)`` counter-clockwise by 0, 90, 180 or 270 degrees
    (exact pixel permutations, :func:`torch.rot90`)."""
    if degrees not in (0, 90, 180, 270):
        raise ValueError(f"rotation: must be 0, 90, 180 or 270 degrees, got {degrees!r}")
    return torch.rot90(x, k=degrees // 90, dims=(-2, -1)).contiguous()
