"""Benchmark: a waiting agent's memory and CPU, and its memory after a round (issue 11).

    PYTHONPATH=. .venv/bin/python bench/agent_idle.py [--list-size 10000] [--idle 10]
                                                     [--commands service run]

Everything is real and on loopback: a coordinator (``python -m coordinator.cli serve``),
and for each command a practice enrolled with a one-time token whose agent is started as
``python -m agent.service --home H --extract E`` (``fedpeer-agent-service``, what systemd
and the Windows service run) or ``python -m agent.cli run --home H --extract E``
(``fedpeer-agent run``, in a terminal). From /proc (Linux only) it reports:

* idle: the agent's VmRSS once it has connected and settled, and the CPU time (user +
  system) it spends over ``--idle`` seconds of waiting;
* a round, started as of the last month end: the time until the agent has its receipt
  (including the ``round start`` command's own start-up), the agent's peak (VmHWM), and
  the peak of the child process that reads the extract (sampled every 0.1 s);
* after: the agent's VmRSS once the child process has ended (``LINGER_SECONDS`` after
  the round), and how many processes are left beside it.

With PYTHONPATH naming another checkout and ``--commands run``, the same figures come
from that code (the "before" column of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")


def status(pid: int, field: str) -> int:
    """A kB figure from /proc/PID/status (0 once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    """Direct children of a process, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def command_line(pid: int) -> str:
    """What a process runs, for the report."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
    except FileNotFoundError:
        return "?"


def settle(pid: int, quiet: float = 3.0, limit: float = 30.0) -> int:
    """VmRSS once it has not changed by more than 256 kB for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last, since = status(pid, "VmRSS"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = status(pid, "VmRSS")
        if abs(now - last) > 256:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return status(pid, "VmRSS")


def run(args: list[str], env: dict[str, str]) -> str:
    """Run a command line tool to completion, returning its output."""
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def last_month_end(today: dt.date) -> dt.date:
    """The last complete month's end: the latest date a round may have."""
    return today.replace(day=1) - dt.timedelta(days=1)


COMMANDS = {
    "service": ["-m", "agent.service"],  # fedpeer-agent-service: what systemd and WinSW run
    "run": ["-m", "agent.cli", "run"],  # fedpeer-agent run, in a terminal
}


def measure(
    kind: str, work: Path, coordinator_home: Path, extract: Path, idle: float, env: dict[str, str]
) -> dict[str, float]:
    """Enrol a practice, start its agent with ``kind``, and take its figures."""
    py = sys.executable

    def coordinator(*words: str) -> str:
        return run([py, "-m", "coordinator.cli", *words, "--home", str(coordinator_home)], env)

    address, enrol_address = (coordinator_home / "address").read_text().split()
    practice = f"B{len(list(work.glob('agent-*'))) + 1}"
    agent_home = work / f"agent-{kind}"
    added = coordinator("practice", "add", "--id", practice, "--name", practice, "--locality", "N")
    token = added.strip().splitlines()[-1]
    enrol_port = enrol_address.rsplit(":", 1)[1]
    enrol = [py, "-m", "agent.cli", "enrol", "--coordinator", address, "--enrol-port", enrol_port]
    run([*enrol, "--token", token, "--home", str(agent_home)], env)
    log_path = work / f"agent-{kind}.log"
    with log_path.open("w") as log:
        agent = subprocess.Popen(
            [py, *COMMANDS[kind], "--home", str(agent_home), "--extract", str(extract)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pid = agent.pid
    figures: dict[str, float] = {}
    try:
        figures["idle"] = settle(pid)
        cpu_before = cpu_seconds(pid)
        time.sleep(idle)
        figures["idle_cpu"] = cpu_seconds(pid) - cpu_before
        figures["idle_later"] = status(pid, "VmRSS")

        as_of = last_month_end(dt.date.today())
        t0 = time.monotonic()
        started = coordinator("round", "start", "--as-of", str(as_of))
        round_id = started.split()[2]
        child_peak, child_pids = 0, set()
        while "event=acknowledged" not in log_path.read_text():
            for child in children(pid):
                child_pids.add(child)
                child_peak = max(child_peak, status(child, "VmHWM"))
            if time.monotonic() - t0 > 300 or agent.poll() is not None:
                raise SystemExit(f"no receipt:\n{log_path.read_text()}")
            time.sleep(0.1)
        figures["round_seconds"] = time.monotonic() - t0
        figures["peak"], figures["at_receipt"] = status(pid, "VmHWM"), status(pid, "VmRSS")
        deadline = time.monotonic() + 60
        while children(pid) and time.monotonic() < deadline:
            for child in children(pid):
                child_pids.add(child)
                if "resource_tracker" not in command_line(child):
                    child_peak = max(child_peak, status(child, "VmHWM"))
            time.sleep(0.2)
        figures["child_peak"] = child_peak
        figures["after"] = settle(pid)
        figures["left"] = len(children(pid))
        coordinator("round", "close", round_id)
        if "Traceback" in log_path.read_text():
            raise SystemExit(log_path.read_text())
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list-size", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument(
        "--commands", nargs="+", choices=sorted(COMMANDS), default=["service", "run"]
    )
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        raise SystemExit("this benchmark reads /proc: Linux only")

    from agent.synth import generate_practice

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        extract = work / "extract"
        as_of = last_month_end(dt.date.today())
        generate_practice(
            extract, practice_seed=7, list_size=args.list_size, as_of=as_of, fmt="parquet"
        )
        results = {}
        for kind in args.commands:
            # A coordinator of its own for each, so no agent sees another's round.
            coordinator_home = work / f"coord-{kind}"
            run([py, "-m", "coordinator.cli", "init", "--home", str(coordinator_home)], env)
            serve = [py, "-m", "coordinator.cli", "serve", "--home", str(coordinator_home)]
            server = subprocess.Popen(
                [*serve, "--port", "0", "--enrol-port", "0"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while not (coordinator_home / "address").exists():
                    time.sleep(0.05)
                results[kind] = measure(kind, work, coordinator_home, extract, args.idle, env)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
    print(f"Agent idle and after a round: {platform.machine()}, {os.cpu_count()} cores, ", end="")
    print(f"Python {platform.python_version()}; a {args.list_size:,}-patient practice (Parquet)")
    rows = [
        ("VmRSS idle, connected and settled", "idle", "MiB"),
        (f"VmRSS {args.idle:.0f} s later", "idle_later", "MiB"),
        (f"CPU time over {args.idle:.0f} s idle", "idle_cpu", "s"),
        ("round started (command) and answered in", "round_seconds", "s"),
        ("agent's peak (VmHWM) through the round", "peak", "MiB"),
        ("peak of the child process reading the extract", "child_peak", "MiB"),
        ("VmRSS after the round, child process ended", "after", "MiB"),
        ("processes left beside the agent", "left", ""),
    ]
    print(f"| {'':46} | " + " | ".join(f"{k:>8}" for k in results) + " |")
    for label, key, unit in rows:
        cells = []
        for figures in results.values():
            value = figures[key]
            if unit == "MiB":
                cells.append(f"{value / 1024:8.1f}")
            else:
                cells.append(f"{value:8.2f}" if unit else f"{value:8.0f}")
        name = f"{label} ({unit})" if unit else label
        print(f"| {name:46} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
