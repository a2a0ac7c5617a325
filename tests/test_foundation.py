"""The package layout, the compiled module's self-description and the CLI conventions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dlsys.kernels
from dlsys.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dlsys.cli ARGS`` in a fresh process (cwd defaults to a temp dir)."""
    return subprocess.run(
        [sys.executable, "-m", "dlsys.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning"},
    )


def _expected_cuda_architectures() -> str:
    """What the build was asked for: -DCMAKE_CUDA_ARCHITECTURES in CMAKE_ARGS, else the
    default that CMakeLists.txt sets, as the module reports it (comma-separated)."""
    import re
    import shlex

    for arg in shlex.split(os.environ.get("CMAKE_ARGS", "")):
        if arg.startswith("-DCMAKE_CUDA_ARCHITECTURES="):
            return arg.split("=", 1)[1].replace(";", ",")
    cmake = (REPO / "CMakeLists.txt").read_text()
    m = re.search(r"set\(CMAKE_CUDA_ARCHITECTURES ([^)]*)\)", cmake)
    assert m, "CMakeLists.txt no longer sets a default CMAKE_CUDA_ARCHITECTURES"
    return ",".join(m.group(1).replace(";", " ").split())


def test_backends_reports_the_build() -> None:
    b = dlsys.kernels.backends()
    assert b["cpu"] is True
    assert b["openmp_threads"] >= 1
    assert isinstance(b["cuda_compiled"], bool)
    # Available means compiled and a device seen; without a device there must be a reason.
    assert b["cuda_available"] == (b["cuda_compiled"] and len(b["cuda_devices"]) > 0)
    if not b["cuda_devices"]:
        assert b["cuda_error"]
    if b["cuda_compiled"]:
        assert b["cuda_architectures"] == _expected_cuda_architectures()
        assert b["cuda_runtime_version"] >= 11000
    else:
        assert b["cuda_runtime_version"] == 0


def test_backends_agrees_with_the_machine() -> None:
    import shutil

    import torch

    b = dlsys.kernels.backends()
    if shutil.which("nvcc") and "-DDLSYS_CUDA=OFF" not in os.environ.get("CMAKE_ARGS", ""):
        # The build found nvcc, so the CUDA sources must have been compiled in.
        assert b["cuda_compiled"]
    if not torch.cuda.is_available():
        assert b["cuda_devices"] == []


def test_omp_threads_can_be_set_and_rejects_zero() -> None:
    from dlsys.kernels import _C

    before = _C.omp_max_threads()
    try:
        _C.omp_set_threads(1)
        assert _C.omp_max_threads() == 1
    finally:
        _C.omp_set_threads(before)
    with pytest.raises(ValueError, match="threads: must be >= 1, got 0"):
        _C.omp_set_threads(0)


def test_import_from_any_directory(tmp_path: Path) -> None:
    code = "import dlsys.kernels, dlsys.cli; print(dlsys.kernels.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith(os.path.join("kernels", "__init__.py"))


def test_info_json_is_one_document(tmp_path: Path) -> None:
    proc = run_cli("info", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    import numpy
    import simpy
    import torch

    assert doc["torch"] == torch.__version__
    assert doc["simpy"] == simpy.__version__
    assert doc["numpy"] == numpy.__version__
    assert doc["backends"] == dlsys.kernels.backends()
    assert doc["threads"]["torch"] >= 1


def test_info_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "C++ kernels" in out and "CUDA kernels" in out and "torch" in out


def test_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--help"]) == 0
    assert "example:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["info", "--no-such-flag"],
    ],
)
def test_usage_error_is_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dlsys: error: ")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def _raise(exc: BaseException):  # type: ignore[no-untyped-def]
    def handler(args: object) -> int:
        raise exc

    return handler


def test_bad_input_exit_2_and_runtime_failure_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dlsys.cli.info as info

    monkeypatch.setattr(info, "run", _raise(ValueError("learner[2].compute.rate: must be > 0")))
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err == "dlsys: error: learner[2].compute.rate: must be > 0\n"

    monkeypatch.setattr(info, "run", _raise(RuntimeError("disk on fire\nsecond line")))
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err == "dlsys: error: RuntimeError: disk on fire second line\n"

    monkeypatch.setattr(info, "run", _raise(RuntimeError("boom")))
    assert main(["--debug", "info"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("dlsys")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert proc.stdout.strip() == dlsys.cli.common.dlsys_version()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- architecture

AREAS = ("common", "simulator", "analytics", "kernels", "training", "distributed", "reproduce")


def _modules() -> dict[str, Path]:
    mods = {}
    for area in (*AREAS, "cli"):
        for f in (REPO / area).rglob("*.py"):
            parts = list(f.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods["dlsys." + ".".join(parts)] = f
    # the compiled module, by its stub: `from dlsys.kernels import _C` imports it, not a cycle
    # through the package's __init__
    mods["dlsys.kernels._C"] = REPO / "kernels" / "_C.pyi"
    return mods


def _import_graph() -> dict[str, set[str]]:
    """dlsys module -> the dlsys modules it imports anywhere (deferred imports included)."""
    import ast

    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    def type_only(tree: ast.AST) -> set[int]:
        """ids of the nodes under `if TYPE_CHECKING:` (never imported at run time)."""
        out: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        return out

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        tree = ast.parse(f.read_text())
        skip = type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                target = owner(n)
                if target is not None and target != m:
                    graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_library_area_imports_the_cli_and_no_import_cycles() -> None:
    graph = _import_graph()
    assert "dlsys.training.loop" in graph["dlsys.training.experiments.context"]  # sanity
    cli_users = {
        m: sorted(d for d in deps if d.startswith("dlsys.cli"))
        for m, deps in graph.items()
        if not m.startswith("dlsys.cli") and any(d.startswith("dlsys.cli") for d in deps)
    }
    assert cli_users == {}
    assert _cycles(graph) == []


def test_cycle_finder_by_hand() -> None:
    # a -> b -> c -> a is one cycle; d -> a is not part of it; e alone is none
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


#: Files exempt from the limits while another issue restructures them (none now: add one only
#: with the issue that brings it back in bounds).
BEING_RESTRUCTURED: set[str] = set()


def test_no_python_file_over_600_lines_and_no_function_over_120() -> None:
    import ast

    too_long = []
    for area in (*AREAS, "cli", "benchmarks"):
        for f in sorted((REPO / area).rglob("*.py")):
            rel = f.relative_to(REPO).as_posix()
            if rel in BEING_RESTRUCTURED:
                continue
            text = f.read_text()
            if len(text.splitlines()) > 600:
                too_long.append(f"{rel}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > 120:
                        too_long.append(f"{rel}: {node.name}() {n} lines")
    assert too_long == []


def test_importing_dlsys_keeps_the_matplotlib_backend() -> None:
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import dlsys.training, dlsys.training.experiments, dlsys.reproduce.report, "
        "dlsys.simulator.report, dlsys.analytics, dlsys.cli.main; "
        "dlsys.cli.main.build_parser(); print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"


def test_each_cli_module_registers_the_command_of_its_name() -> None:
    # main() registers only the module named by the command word; that is only right if
    # dlsys.cli.NAME adds the command NAME (and the full parser still has every command).
    from dlsys.cli.main import _subcommand_modules, build_parser

    names = [m.rsplit(".", 1)[1] for m in _subcommand_modules()]
    assert {"simulate", "train", "ps", "cost"} <= set(names)

    def commands(command: str | None) -> list[str]:
        parser = build_parser(command)
        (sub,) = [a for a in parser._actions if a.dest == "command"]
        return sorted(sub.choices or ())

    assert commands(None) == sorted(names)
    for name in names:
        assert commands(name) == [name]


def test_dlsys_simulate_does_not_import_torch(tmp_path: Path) -> None:
    # Before the lazy registry, building the parser imported torch for every command
    # (cli/ps.py and cli/train.py's flags need the model table): ~2.5 s of start-up.
    scenario = Path(__file__).parents[1] / "examples" / "scenarios" / "async_exponential.toml"
    code = (
        "import sys; from dlsys.cli.main import main; "
        f"rc = main(['simulate', {str(scenario)!r}, '--json']); "
        "print(rc, 'torch' in sys.modules, file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stderr.strip().splitlines()[-1] == "0 False"
    json.loads(out.stdout)
