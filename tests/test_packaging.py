"""Two installs: ``pip install fedpeer`` is the agent; the coordinator and noise are extras.

The wheel is built from this checkout (``pip wheel --no-deps --no-build-isolation``) and
its metadata read. Then it is installed into a fresh virtual environment that sees the
dependencies installed here, with every module outside the agent's own dependency
closure made unimportable (pandas, alembic, psycopg, jinja2, opendp, the test tools...),
and the agent is run from its console scripts: ``--help``, ``synth`` and ``compute``.
"""

from __future__ import annotations

import email.parser
import importlib.metadata as md
import importlib.util
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import fedpeer

ROOT = Path(__file__).resolve().parent.parent
COORDINATOR_ONLY = {
    "pandas",
    "alembic",
    "psycopg",
    "jinja2",
    "grpcio-health-checking",
    "playwright",
}
NOISE = {"opendp"}
AGENT = {
    "grpcio",
    "protobuf",
    "cryptography",
    "duckdb",
    "duckdb-engine",
    "sqlalchemy",
    "pyarrow",
    "numpy",
    "typer",
    "rich",
}


def _bench_install_size():
    spec = importlib.util.spec_from_file_location("install_size", ROOT / "bench/install_size.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


install_size = _bench_install_size()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_size.build_wheel(tmp_path_factory.mktemp("wheel"))


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def _names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


@pytest.mark.slow
def test_the_wheel_is_the_agent_and_the_extras_carry_the_rest(wheel: Path) -> None:
    metadata = _metadata(wheel)
    assert metadata["Name"] == "fedpeer" and metadata["Version"] == fedpeer.__version__
    requirements = install_size.wheel_requirements(wheel)
    base = _names(install_size.wanted(requirements, None))
    assert base == AGENT
    assert not base & (COORDINATOR_ONLY | NOISE)
    assert set(metadata.get_all("Provides-Extra")) >= {"coordinator", "noise", "postgres", "dev"}
    assert _names(install_size.wanted(requirements, "coordinator")) == COORDINATOR_ONLY
    assert _names(install_size.wanted(requirements, "noise")) == NOISE
    assert _names(install_size.wanted(requirements, "postgres")) == {"psycopg"}
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        entry_points = z.read(name).decode()
        files = z.namelist()
    assert "fedpeer-agent = agent.cli:main" in entry_points
    assert "fedpeer-agent-service = agent.service:main" in entry_points
    assert "fedpeer-coordinator = coordinator.entry:main" in entry_points
    # Data the agent needs at run time travels in the wheel; the tests do not.
    assert any(f.startswith("fedpeer/definitions/standard/") and f.endswith(".toml") for f in files)
    assert "coordinator/migrations/script.py.mako" in files
    assert not any(f.startswith("tests/") for f in files)


BLOCKER = '''"""Make every module outside the agent's dependency closure unimportable."""
import sys
from importlib.abc import MetaPathFinder

BLOCKED = frozenset({blocked!r})


class _AgentOnly(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the agent install)",
                                      name=name)
        return None


sys.meta_path.insert(0, _AgentOnly())
'''


@pytest.fixture(scope="module")
def agent_only(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with fedpeer installed from the wheel, and only the agent's
    dependencies importable; its bin/ directory."""
    venv = tmp_path_factory.mktemp("agent-only") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    allowed = install_size.closure(
        install_size.wanted(install_size.wheel_requirements(wheel), None)
    )
    allowed_names = set().union(*(install_size.top_level_names(d) for d in allowed.values()))
    blocked = set()
    for dist in md.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in allowed:
            blocked |= install_size.top_level_names(dist)
    blocked -= allowed_names | {"agent", "fedpeer", "coordinator"}
    assert {"pandas", "alembic", "psycopg", "jinja2", "opendp", "grpc_health"} <= blocked
    (site / "_agent_only.py").write_text(BLOCKER.format(blocked=sorted(blocked)))
    # The dependencies installed here, after the venv's own site-packages (so fedpeer is
    # the wheel's), then the blocker.
    (site / "zz_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\nimport _agent_only\n"
    )
    return venv / "bin"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_agent_runs_without_the_coordinator_and_noise(agent_only: Path, tmp_path: Path) -> None:
    python = str(agent_only / "python")
    blocked = _run([python, "-c", "import pandas"], tmp_path)
    assert blocked.returncode != 0 and "not in the agent install" in blocked.stderr
    where = _run([python, "-c", "import agent; print(agent.__file__)"], tmp_path)
    assert where.returncode == 0 and str(agent_only.parent) in where.stdout, where

    # Every module of the agent's side imports.
    probe = (
        "import importlib, pkgutil, agent, fedpeer\n"
        "for package in (agent, fedpeer):\n"
        "    for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('imported')\n"
    )
    imported = _run([python, "-c", probe], tmp_path)
    assert imported.returncode == 0 and "imported" in imported.stdout, imported.stderr

    helped = _run([str(agent_only / "fedpeer-agent"), "--help"], tmp_path)
    assert helped.returncode == 0 and "compute" in helped.stdout, helped.stderr
    service = _run([str(agent_only / "fedpeer-agent-service"), "--help"], tmp_path)
    assert service.returncode == 0 and "--log-file" in service.stdout, service.stderr

    made = _run(
        [
            str(agent_only / "fedpeer-agent"),
            "synth",
            "--out",
            str(tmp_path / "practices"),
            "--practices",
            "1",
            "--list-size",
            "300",
            "--format",
            "csv",
            "--as-of",
            "2026-09-30",
        ],
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    (extract,) = (p for p in (tmp_path / "practices").iterdir() if p.is_dir())
    computed = _run(
        [
            str(agent_only / "fedpeer-agent"),
            "compute",
            "--extract",
            str(extract),
            "--as-of",
            "2026-09-30",
            "--out",
            str(tmp_path / "released.csv"),
        ],
        tmp_path,
    )
    assert computed.returncode == 0, computed.stderr
    rows = (tmp_path / "released.csv").read_text().splitlines()
    assert rows[0].startswith("indicator,") and len(rows) > 10

    # The coordinator's command says which install it needs.
    coordinator = _run([str(agent_only / "fedpeer-coordinator"), "--help"], tmp_path)
    assert coordinator.returncode == 1
    assert "pip install 'fedpeer[coordinator]'" in coordinator.stderr
    assert "Traceback" not in coordinator.stderr
