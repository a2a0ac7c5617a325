"""Plots: matplotlib figures drawn without pyplot, saved as PNG (optionally SVG) with their data.

Figures are plain :class:`matplotlib.figure.Figure` objects (:func:`subplots`), so importing
or using dlsys never selects or changes matplotlib's global backend: a notebook that imports
dlsys keeps its own. :func:`save_figure` renders through the Agg canvas whatever the backend,
so the bytes are the same on every machine. matplotlib is imported on first use only (it
costs a noticeable share of ``import dlsys``).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

from dlsys.common.io import atomic_write_bytes, write_json

__all__ = ["colormap", "pyplot", "save_figure", "subplots"]

# Fixed metadata so the same figure gives the same bytes on the same machine.
_PNG_METADATA = {"Software": None}
_SVG_METADATA = {"Date": None}


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A new ``Figure`` and its axes, as ``pyplot.subplots`` returns them, without pyplot.

    ``kwargs`` go to ``Figure`` (``figsize`` in inches, ``dpi``) except ``squeeze``,
    ``sharex``, ``sharey``, ``subplot_kw`` and ``gridspec_kw``, which go to
    ``Figure.subplots``.
    """
    from matplotlib.figure import Figure

    grid_keys = ("squeeze", "sharex", "sharey", "subplot_kw", "gridspec_kw", "width_ratios")
    grid = {k: kwargs.pop(k) for k in grid_keys if k in kwargs}
    fig = Figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **grid)


def colormap(name: str) -> Any:
    """The registered matplotlib colormap ``name`` (e.g. ``"viridis"``), without pyplot."""
    import matplotlib

    return matplotlib.colormaps[name]


class _Pyplot:
    """The part of ``matplotlib.pyplot`` dlsys uses (``subplots``), on plain Figures.

    Kept so that ``from dlsys.common.plotting import pyplot as plt; plt.subplots(...)`` in
    existing code draws on a ``Figure`` without touching the global backend; new code calls
    :func:`subplots` directly.
    """

    subplots = staticmethod(subplots)
    get_cmap = staticmethod(colormap)

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to release: a plain ``Figure`` is not registered with pyplot."""


#: Compatibility name for :class:`_Pyplot` (``plt.subplots`` on plain Figures).
pyplot = _Pyplot()


def save_figure(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    data: Any = None,
    svg: bool = False,
    dpi: int = 120,
) -> Path:
    """Save ``fig`` as PNG at ``path`` (and SVG beside it if ``svg``), at ``dpi`` dots per inch.

    ``data`` (anything :func:`dlsys.common.io.to_jsonable` accepts) is written next to the
    image as ``<stem>.json`` so the plot can be redrawn. Returns the PNG path. A figure made
    by ``matplotlib.pyplot`` is closed afterwards (a plain ``Figure`` needs no closing).
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
    pyplot_module = sys.modules.get("matplotlib.pyplot")
    if pyplot_module is not None and pyplot_module.fignum_exists(getattr(fig, "number", -1)):
        pyplot_module.close(fig)
    return png
