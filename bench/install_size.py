"""What each install of fedpeer puts on a machine: the agent alone, and each extra.

    PYTHONPATH=. .venv/bin/python bench/install_size.py [--wheel DIST.whl]

The agent's install is fedpeer's base requirements (its wheel's Requires-Dist without an
extra) and everything they require in turn, as installed in this environment: each
distribution's size is the sum of the files its RECORD lists (importlib.metadata),
bytecode included. fedpeer itself is counted from its wheel's files, uncompressed (built
here with ``pip wheel --no-deps --no-build-isolation`` unless ``--wheel`` names one),
since the environment may hold it as an editable install. Each extra is what it adds on
top of the agent; "everything" is what a single install took before the split.
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.metadata as md
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "fedpeer", "agent", "coordinator")


def build_wheel(out: Path) -> Path:
    """fedpeer's wheel from a copy of this checkout's sources (no build files left here)."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    subprocess.run(
        [*pip, "--wheel-dir", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("fedpeer-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The Requires-Dist of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(z.read(name).decode())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def wheel_size(wheel: Path) -> int:
    """The uncompressed size of a wheel's files."""
    with zipfile.ZipFile(wheel) as z:
        return sum(i.file_size for i in z.infolist())


def _applies(requirement: Requirement, extra: str) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def wanted(requirements: Iterable[Requirement], extra: str | None) -> list[Requirement]:
    """The base requirements (``extra`` None), or those only ``extra`` adds."""
    if extra is None:
        return [r for r in requirements if _applies(r, "")]
    return [r for r in requirements if _applies(r, extra) and not _applies(r, "")]


def closure(requirements: Iterable[Requirement]) -> dict[str, md.Distribution]:
    """The installed distributions these requirements pull in, by normalised name."""
    found: dict[str, md.Distribution] = {}
    extras_of: dict[str, set[str]] = {}
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found and set(requirement.extras) <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, set()) | set(requirement.extras)
        found[name] = dist = md.distribution(requirement.name)
        for text in dist.requires or []:
            nested = Requirement(text)
            if any(_applies(nested, e) for e in ("", *extras_of[name])):
                todo.append(nested)
    return found


def installed_size(dist: md.Distribution) -> int:
    """The bytes of the files a distribution's RECORD lists."""
    total = 0
    for f in dist.files or []:
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            total += path.stat().st_size
    return total


def top_level_names(dist: md.Distribution) -> set[str]:
    """The names a distribution makes importable at the top level."""
    names = set()
    for f in dist.files or []:
        first = f.parts[0]
        if first.endswith((".dist-info", ".data", ".pth")) or first in ("..", "__pycache__"):
            continue
        names.add(first.split(".")[0])
    return names


def mib(size: int) -> str:
    """A size in MiB, for the table."""
    return f"{size / 2**20:7.1f}"


def main(argv: list[str] | None = None) -> int:
    """Print the installed size of the agent, of each extra, and of everything."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheel", type=Path, help="fedpeer's wheel (default: build one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or build_wheel(Path(tmp))
        requirements = wheel_requirements(wheel)
        own = wheel_size(wheel)
    base = closure(wanted(requirements, None))
    sizes = {name: installed_size(d) for name, d in base.items()}
    print(f"fedpeer {wheel.name}: {mib(own).strip()} MiB of its own files\n")
    print("| the agent: pip install fedpeer | MiB |")
    print("|---|---:|")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        print(f"| {name} {base[name].version} | {mib(size).strip()} |")
    agent_total = own + sum(sizes.values())
    print(f"| fedpeer | {mib(own).strip()} |")
    print(f"| **total, {len(sizes) + 1} distributions** | **{mib(agent_total).strip()}** |\n")
    everything = dict(base)
    print("| extra | adds | MiB |")
    print("|---|---|---:|")
    for extra in ("noise", "postgres", "coordinator"):
        added = {n: d for n, d in closure(wanted(requirements, extra)).items() if n not in base}
        everything.update(added)
        size = sum(installed_size(d) for d in added.values())
        print(f"| [{extra}] | {', '.join(sorted(added))} | {mib(size).strip()} |")
    total = own + sum(installed_size(d) for d in everything.values())
    print(
        f"| everything (one install before the split) | {len(everything) + 1} "
        f"distributions | {mib(total).strip()} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
