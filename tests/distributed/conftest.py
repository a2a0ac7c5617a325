"""One local Ray instance (on 127.0.0.1) for the whole test session; shut down at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install 'dlsys[ray]'")

from dlsys.distributed.cluster import RaySession, connect, disconnect


@pytest.fixture(scope="session")
def ray_local() -> Iterator[RaySession]:
    """The session's local Ray instance: 2 CPUs, every service on the loopback address."""
    session = connect(num_cpus=2)
    try:
        yield session
    finally:
        disconnect(session)
