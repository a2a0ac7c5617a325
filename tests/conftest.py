"""Shared pytest configuration: the ``gpu`` marker skips without a CUDA device, and every
test gets the process's torch thread count back."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


def _cuda_device_present() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_device_present():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Give every test the pytest process's torch thread count back: a CLI run in-process
    with ``--threads 1`` (the train --seeds --ray test) set it for every later test, and
    ``dlsys info``'s openmp_threads then disagreed with a subprocess's."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
