"""Plots: matplotlib on the Agg backend, saved as PNG (optionally SVG) with their data beside.

Import :func:`pyplot` from here rather than ``matplotlib.pyplot`` so the backend is always
Agg (no display is needed, and the output is the same on every machine).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dlsys.common.io import atomic_write_bytes, write_json

pyplot = plt

# Fixed metadata so the same figure gives the same bytes on the same machine.
_PNG_METADATA = {"Software": None}
_SVG_METADATA = {"Date": None}


def save_figure(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    data: Any = None,
    svg: bool = False,
    dpi: int = 120,
) -> Path:
    """Save ``fig`` as PNG at ``path`` (and SVG beside it if ``svg``), then close it.

    ``data`` (anything :func:`dlsys.common.io.to_jsonable` accepts) is written next to the
    image as ``<stem>.json`` so the plot can be redrawn. Returns the PNG path.
    """
    png = Path(path).with_suffix(".png")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=_PNG_METADATA)
    atomic_write_bytes(png, buf.getvalue())
    if svg:
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata=_SVG_METADATA)
        atomic_write_bytes(png.with_suffix(".svg"), buf.getvalue())
    if data is not None:
        write_json(png.with_suffix(".json"), data)
    plt.close(fig)
    return png
