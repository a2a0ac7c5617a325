"""Ray start-up on the loopback address, joining a cluster, and the errors on the way."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from dlsys.distributed.cluster import LOOPBACK, RaySession, check_address, connect, log_addresses


def test_local_instance_binds_every_service_to_loopback(ray_local: RaySession) -> None:
    import ray

    assert ray_local.owned and ray_local.local
    assert ray_local.address.startswith(f"{LOOPBACK}:")
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {LOOPBACK}
    # The GCS, raylet and workers write the addresses they listen on into the session's logs;
    # without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 they hold the machine's interface address.
    assert ray_local.session_dir is not None
    found = log_addresses(ray_local.session_dir)
    assert LOOPBACK in found
    assert found <= {LOOPBACK, "0.0.0.0"}, f"addresses other than loopback: {found}"


def test_connect_reuses_the_running_instance(ray_local: RaySession) -> None:
    again = connect()
    assert again.address == ray_local.address and not again.owned


def _closed_port() -> int:
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_unreachable_address_is_a_clear_error_at_once(ray_local: RaySession) -> None:
    port = _closed_port()
    t = time.monotonic()
    with pytest.raises(ValueError, match=rf"--address 127.0.0.1:{port}: no Ray cluster answers"):
        connect(f"{LOOPBACK}:{port}")
    assert time.monotonic() - t < 30


def test_silent_port_gives_up_at_the_deadline() -> None:
    # A port that accepts connections but never speaks Ray: ray.init would wait; connect
    # stops at its deadline. In a fresh process (this one is connected already).
    srv = socket.socket()
    srv.bind((LOOPBACK, 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    code = (
        f"from dlsys.distributed.cluster import connect\nconnect('{LOOPBACK}:{port}', timeout=2)\n"
    )
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        srv.close()
    assert p.returncode != 0
    want = f"ValueError: --address {LOOPBACK}:{port}: no Ray cluster answered within 2 s"
    assert want in p.stderr


def test_connected_process_refuses_a_second_cluster(ray_local: RaySession) -> None:
    srv = socket.socket()
    srv.bind((LOOPBACK, 0))
    srv.listen(1)
    try:
        with pytest.raises(ValueError, match="already connected"):
            connect(f"{LOOPBACK}:{srv.getsockname()[1]}")
    finally:
        srv.close()


@pytest.mark.parametrize(
    "bad", ["localhost", "10.0.0.1:", ":6379", "10.0.0.1:99999", "ray://10.0.0.1:10001"]
)
def test_malformed_address_names_the_flag(bad: str) -> None:
    with pytest.raises(ValueError, match="--address: expected HOST:PORT"):
        check_address(bad)
