"""Starting, joining and stopping Ray: a local instance on the loopback address, or a cluster.

By default :func:`connect` starts a local Ray instance with the machine's cores and no
dashboard, with every Ray service (GCS, raylet, object store, workers) bound to 127.0.0.1 and
never to the machine's interface address. Ray 2.60 binds a local instance to the interface
address unless the environment variable ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set when
``ray`` is imported (Ray reads it into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` at
import); :func:`import_ray` sets it before the import, and its services inherit it.

``connect(address="HOST:PORT")`` joins a running cluster instead (``ray start --head`` on
one machine, ``ray start --address HOST:PORT`` on the others). An address where nothing
answers fails with a one-line ``ValueError`` within ``timeout`` seconds (30 by default),
never a hang: the port is probed first, and ``ray.init`` runs with a deadline.

Ray is an optional dependency (``pip install 'dlsys[ray]'``); without it every entry point
raises :class:`ImportError` saying so in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from dlsys.common import check_positive

#: The only address a local instance binds to.
LOOPBACK = "127.0.0.1"
#: The environment variable that makes Ray 2.60 bind a local instance to :data:`LOOPBACK`.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: The environment variable that makes Ray send its authentication token to a cluster joined
#: by address (``token``); Ray reads the token from ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: What to run when Ray is missing.
INSTALL_HINT = "pip install 'dlsys[ray]'"
#: Seconds :func:`connect` waits for a cluster at ``address`` before giving up.
CONNECT_TIMEOUT_S = 30.0
#: Ray namespace of dlsys's actors.
NAMESPACE = "dlsys"
#: Largest object (bytes) a local instance passes inside the actor call's message instead of
#: through the shared-memory object store (Ray's ``max_direct_call_object_size``, 100 KiB by
#: default). Weights and gradients of the real PS's models are a few hundred KiB: inline they
#: skip the object store's create / seal / fetch round trips on every update.
INLINE_BYTES = 2 * 1024 * 1024

_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})$")


def import_ray(*, loopback: bool = True) -> ModuleType:
    """Import and return the ``ray`` module, set up to bind to 127.0.0.1 when ``loopback``.

    Raises ImportError with the install command when Ray is not installed.
    """
    os.environ[LOOPBACK_ENV] = "0" if loopback else "1"
    if "ray" in sys.modules:
        # NOTE: ray was imported before the variable was set (by the caller's own code); its
        # constant is read at import, so set it to what the variable would have given.
        consts = sys.modules.get("ray._private.ray_constants")
        if consts is not None:
            consts.ENABLE_RAY_CLUSTER = not loopback  # type: ignore[attr-defined]
    try:
        import ray
    except ImportError:
        raise ImportError(f"Ray is not installed; install it with: {INSTALL_HINT}") from None
    return ray


def ray_available() -> bool:
    """True when ``ray`` can be imported."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


@dataclass
class RaySession:
    """A connection to Ray made by :func:`connect`.

    ``owned``: this process started the instance (and :func:`disconnect` stops it);
    ``address``: the GCS address (``HOST:PORT``); ``session_dir``: the Ray session folder
    (its ``logs/`` hold the services' addresses); ``cpus``: CPUs in the cluster.
    """

    address: str
    session_dir: Path | None
    owned: bool
    cpus: float
    local: bool


def check_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` into its parts or raise ValueError naming ``--address``."""
    if not isinstance(address, str):
        raise TypeError(f"--address: must be a string HOST:PORT, got {address!r}")
    m = _ADDRESS.match(address.strip())
    if not m or not 0 < int(m["port"]) < 65536:
        raise ValueError(
            f"--address: expected HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379), "
            f"got {address!r}"
        )
    return m["host"].strip("[]"), int(m["port"])


def _probe(host: str, port: int, timeout: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ValueError(
            f"--address {host}:{port}: no Ray cluster answers there ({why}); start one with "
            f"'ray start --head --port {port}' on that machine"
        ) from None


def _auth_hint() -> str:
    """How to authenticate, unless this process already asks Ray to (Ray 2.60 sends its token
    to an address given explicitly only with ``RAY_AUTH_MODE=token``)."""
    if os.environ.get(AUTH_MODE_ENV, "").lower() == "token":
        return ""
    return (
        f"; if the cluster uses token authentication (Ray's default for 'ray start' where "
        f"~/.ray/auth_token exists), set {AUTH_MODE_ENV}=token and give its token in "
        "RAY_AUTH_TOKEN or ~/.ray/auth_token"
    )


def _init_with_deadline(ray: Any, timeout: float, **kwargs: Any) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["ctx"] = ray.init(**kwargs)
        except BaseException as exc:  # handed to the caller below
            box["exc"] = exc

    t = threading.Thread(target=target, name="dlsys-ray-init", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ValueError(
            f"--address {kwargs.get('address')}: no Ray cluster answered within {timeout:g} s "
            f"(is it a Ray head node's GCS port, e.g. 6379?){_auth_hint()}"
        )
    if "exc" in box:
        exc = box["exc"]
        if isinstance(exc, ConnectionError | TimeoutError | RuntimeError):
            raise ValueError(
                f"--address {kwargs.get('address')}: cannot join the Ray cluster: "
                f"{' '.join(str(exc).split())}{_auth_hint()}"
            ) from None
        raise exc
    return box["ctx"]


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> RaySession:
    """Start a local Ray instance on 127.0.0.1, or join the cluster at ``address``.

    ``num_cpus``: CPUs of a local instance (default: the machine's cores). ``address``:
    ``HOST:PORT`` of a running cluster's head, or ``"auto"`` for one started on this machine
    with ``ray start``; an address where no cluster answers raises ValueError within
    ``timeout`` seconds. If this process is already connected, that connection is reused.
    """
    timeout = check_positive("timeout", timeout)
    local = address is None
    if address is not None and address != "auto":
        host, port = check_address(address)
        _probe(host, port, min(5.0, timeout))
    ray = import_ray(loopback=local or (address or "").startswith(LOOPBACK))
    if ray.is_initialized():
        gcs = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", gcs):
            raise ValueError(
                f"--address {address}: this process is already connected to the Ray cluster "
                f"at {gcs}; one process joins one cluster"
            )
        return RaySession(gcs, _session_dir(ray), False, _cpus(ray), local)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "namespace": NAMESPACE,
        "configure_logging": True,
        "logging_level": "ERROR",
    }
    if local:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        kwargs["_system_config"] = {"max_direct_call_object_size": INLINE_BYTES}
        info = ray.init(**kwargs).address_info
    else:
        if num_cpus is not None:
            raise ValueError("num_cpus: only for a local instance, not with --address")
        kwargs.pop("include_dashboard")
        info = _init_with_deadline(ray, timeout, address=address, **kwargs).address_info
    sd = info.get("session_dir")
    return RaySession(
        info.get("gcs_address") or info.get("address") or "",
        Path(sd) if sd else None,
        local,
        _cpus(ray),
        local,
    )


def _cpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))


def _session_dir(ray: Any) -> Path | None:
    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return None
    return Path(node.get_session_dir_path())


def disconnect(session: RaySession) -> None:
    """Stop the local instance ``session`` started (its processes end), or leave the cluster."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def ray_session(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Iterator[RaySession]:
    """:func:`connect` for the block, then :func:`disconnect` if this call connected."""
    ray = sys.modules.get("ray")
    already = ray is not None and ray.is_initialized()
    session = connect(address, num_cpus=num_cpus, timeout=timeout)
    try:
        yield session
    finally:
        if not already:
            disconnect(session)


def log_addresses(session_dir: str | os.PathLike[str]) -> set[str]:
    """Every IPv4 address written in the Ray session's logs (to check what services bound to)."""
    found: set[str] = set()
    pat = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
    for p in Path(session_dir, "logs").rglob("*"):
        if p.is_file():
            with contextlib.suppress(OSError):
                found.update(pat.findall(p.read_text(encoding="utf-8", errors="replace")))
    return found


__all__ = [
    "CONNECT_TIMEOUT_S",
    "INLINE_BYTES",
    "INSTALL_HINT",
    "LOOPBACK",
    "LOOPBACK_ENV",
    "RaySession",
    "check_address",
    "connect",
    "disconnect",
    "import_ray",
    "log_addresses",
    "ray_available",
    "ray_session",
]
