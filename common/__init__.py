"""Small pieces every dlsys area shares: error messages, atomic output, JSON, plots, progress.

Nothing here knows about simulators, costs, kernels or training; each area imports from
``dlsys.common`` so that the project's conventions (errors that name the field, the value
and what is allowed; outputs written atomically; plots on plain matplotlib Figures with their
data beside them; quiet progress bars) are implemented once.
"""

from dlsys.common.errors import (
    check_choice,
    check_finite,
    check_int,
    check_positive,
    nearest,
    unknown_name,
)
from dlsys.common.io import (
    atomic_write_bytes,
    atomic_write_text,
    output_dir,
    to_jsonable,
    write_json,
)
from dlsys.common.memory import check_memory, format_bytes, memory_limit

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_choice",
    "check_finite",
    "check_int",
    "check_memory",
    "check_positive",
    "format_bytes",
    "memory_limit",
    "nearest",
    "output_dir",
    "to_jsonable",
    "unknown_name",
    "write_json",
]
