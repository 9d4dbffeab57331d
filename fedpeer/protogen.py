"""Generate the gRPC stubs in ``fedpeer/v1/`` from ``proto/fedpeer/v1/*.proto``.

``python -m fedpeer.protogen`` regenerates the committed stubs; ``--check`` generates
into a temporary directory and exits non-zero when the committed ones differ, so a
proto edit without regeneration fails CI.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_DIR = PROTO_ROOT / "fedpeer" / "v1"
STUB_DIR = ROOT / "fedpeer" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    # protoc finds the mypy plugins (protoc-gen-mypy) on PATH, beside this interpreter.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out / "fedpeer" / "v1").iterdir())


def _stubs(directory: Path) -> dict[str, Path]:
    return {
        p.name: p
        for p in directory.iterdir()
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def stale_stubs() -> list[str]:
    """Names of stubs that differ from, are missing from, or are extra to a fresh build."""
    with tempfile.TemporaryDirectory() as tmp:
        _generate(Path(tmp))
        fresh = _stubs(Path(tmp) / "fedpeer" / "v1")
        committed = _stubs(STUB_DIR) if STUB_DIR.exists() else {}
        names = sorted(set(fresh) | set(committed))
        return [
            n
            for n in names
            if n not in fresh
            or n not in committed
            or not filecmp.cmp(fresh[n], committed[n], shallow=False)
        ]


def regenerate() -> list[str]:
    """Write fresh stubs into ``fedpeer/v1/`` and return their names."""
    with tempfile.TemporaryDirectory() as tmp:
        # Generate first: a protoc that fails leaves the committed stubs as they were.
        _generate(Path(tmp))
        fresh = _stubs(Path(tmp) / "fedpeer" / "v1")
        STUB_DIR.mkdir(parents=True, exist_ok=True)
        for old in _stubs(STUB_DIR).values():
            old.unlink()
        for name, path in fresh.items():
            shutil.copyfile(path, STUB_DIR / name)
    (STUB_DIR / "__init__.py").touch()
    return sorted(fresh)


def main(argv: list[str] | None = None) -> int:
    """Regenerate the stubs, or with ``--check`` report stale ones and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m fedpeer.protogen")
    parser.add_argument("--check", action="store_true", help="fail when stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_stubs()
        if stale:
            print(
                "stale gRPC stubs (run `make proto`): " + ", ".join(stale),
                file=sys.stderr,
            )
            return 1
        print("gRPC stubs are up to date")
        return 0
    for name in regenerate():
        print(f"wrote fedpeer/v1/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
