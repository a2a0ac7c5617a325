"""Ray start-up on the loopback address, joining a cluster, and the errors on the way."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def started_head() -> Iterator[tuple[str, dict[str, str], Path]]:
    """A Ray head started with ``ray start --head --node-ip-address=127.0.0.1 --block`` in its
    own process group (1 CPU, no dashboard, token authentication with a token of its own);
    yields its address, the environment a client needs, and its temp folder. The fixture
    kills the process group (never ``ray stop``: that stops every Ray instance here)."""
    import os
    import secrets
    import shutil
    import signal
    import tempfile

    port = _closed_port()
    tmp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    cmd = [ray_cli, "start", "--head", f"--node-ip-address={LOOPBACK}", f"--port={port}"]
    cmd += [f"--temp-dir={tmp}", "--num-cpus=1", "--include-dashboard=false", "--block"]
    head = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "ray start --head did not listen in 60 s"
                time.sleep(0.3)
        yield f"{LOOPBACK}:{port}", env, tmp
    finally:
        # The head's processes (GCS, raylet, its workers) share its process group. SIGTERM
        # makes the head drain for up to 30 s; nothing here needs draining.
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_ps_run_joins_a_started_head(
    started_head: tuple[str, dict[str, str], Path], tmp_path: Path
) -> None:
    # A separate process (this one is connected to the session's instance) joins the head with
    # --address and runs the real PS there; the head's services bound to 127.0.0.1 only.
    import json

    address, env, tmp = started_head
    sc = tmp_path / "s.toml"
    sc.write_text(
        '[simulation]\nseed = 1\nuntil_updates = 6\n[[learner]]\nname = "w"\ncount = 2\n'
        'compute = { dist = "fixed", value = 0.02 }\n',
        encoding="utf-8",
    )
    args = [str(Path(sys.executable).with_name("dlsys")), "ps", "run", str(sc), "--model"]
    args += ["mlp:16", "--per-learner-batch", "4", "--address", address, "--json"]
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    assert doc["summary"]["updates"] == 6 and doc["summary"]["engine"]["name"] == "ray"
    (session,) = [d for d in tmp.glob("session_*") if d.is_dir() and not d.is_symlink()]
    found = log_addresses(session)
    assert LOOPBACK in found and found <= {LOOPBACK, "0.0.0.0"}, found
    # Without the token the join fails within its deadline, in one line naming the flag and
    # how to authenticate (a separate process: this one is connected already).
    bare = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    code = f"from dlsys.distributed.cluster import connect\nconnect('{address}', timeout=3)\n"
    p = subprocess.run([sys.executable, "-c", code], env=bare, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert p.returncode != 0
    # Ray's C++ client may log its own warning after the traceback: find the error's line.
    (error,) = [line for line in p.stderr.splitlines() if line.startswith("ValueError: ")]
    assert error.startswith(f"ValueError: --address {address}: no Ray cluster answered within 3 s")
    assert "set RAY_AUTH_MODE=token" in error
