"""``make demo``: one collection round, end to end, on embedded defaults.

A coordinator on SQLite with a fresh CA listens on 127.0.0.1; twenty synthetic practices
are generated; each gets an agent, enrolled with a one-time token over the enrolment port
(server TLS) and answering over mutual TLS; one standard round is run as of the last
month end; the round is closed, compared, printed and reported; everything shuts down.
The agents run the real pipeline: extract -> engine -> disclosure control -> ledger ->
submission -> receipt -> audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import shutil
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console

from agent.cli_network import practice_agent
from agent.client import enrol
from agent.synth import generate_practices
from coordinator.admin_client import AdminClient
from coordinator.ca import init_home
from coordinator.comparisons import build_comparison
from coordinator.console import print_comparison_table
from coordinator.reports import write_practice_reports, write_summary_report
from coordinator.server import CoordinatorConfig, start_coordinator
from fedpeer.collection import DefinitionDocument
from fedpeer.definitions import load_round_set, serialize


def last_month_end(today: date) -> date:
    """The last day of the month before ``today``'s month."""
    return today.replace(day=1) - timedelta(days=1)


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for the reader and for tests."""

    round_id: str
    as_of: date
    submitted: int
    reports: list[Path]
    seconds: float


async def run_demo(
    out: Path,
    *,
    practices: int = 20,
    list_size: int = 4000,
    as_of: date | None = None,
    seed: int = 2026,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole demo into ``out``; returns what it did."""
    # Wide enough for the comparison table even when output is not a terminal.
    console = console or Console(width=max(Console().width, 120))
    started = time.perf_counter()
    as_of = as_of or last_month_end(date.today())
    assert as_of.day == calendar.monthrange(as_of.year, as_of.month)[1]
    work = out / "work"
    if out.exists():
        shutil.rmtree(out)
    work.mkdir(parents=True)

    def step(text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/]  {text}")

    step(f"Generating {practices} synthetic practices (about {list_size:,} patients each)")
    traits = await asyncio.to_thread(
        generate_practices,
        work / "practices",
        practices=practices,
        list_size=list_size,
        seed=seed,
        as_of=as_of,
        fmt="csv",
    )

    home = init_home(work / "coordinator")
    running = await start_coordinator(CoordinatorConfig(home=home.root, announce_poll_seconds=0.5))
    try:
        step(
            f"Coordinator up: mutual TLS on {running.address}, enrolment on "
            f"{running.enrol_address}, store {home.database}"
        )
        async with AdminClient(running.address, home) as admin:
            tokens = [await admin.invite(t.practice_id, t.name, t.locality) for t in traits]
            step(f"Issued {len(tokens)} one-time enrolment tokens")
            agent_homes = [work / "agents" / t.practice_id for t in traits]
            await asyncio.gather(
                *(
                    enrol(running.address, running.enrol_port, token, agent_home)
                    for (token, _expires), agent_home in zip(tokens, agent_homes, strict=True)
                )
            )
            step(f"Enrolled {len(agent_homes)} agents: each made its own key and got a certificate")

            documents = [DefinitionDocument.of(d.id, serialize(d)) for d in load_round_set()]
            round_ = await admin.start_round(as_of, documents)
            step(
                f"Started round {round_.round_id} as of {as_of:%d %B %Y}: "
                f"{len(documents)} signed definitions"
            )

            agents = [
                practice_agent(agent_home, str(work / "practices" / t.practice_id))
                for t, agent_home in zip(traits, agent_homes, strict=True)
            ]
            outcomes = await asyncio.gather(*(agent.run_once() for agent in agents))
            failed = [o for batch in outcomes for o in batch if o.status != "submitted"]
            for o in failed:
                console.print(f"[red]round {o.round_id}: {o.status}[/] {o.detail}")
            status = await admin.status(round_.round_id)
            submitted = sum(p.state == "submitted" for p in status.practices)
            step(f"{submitted} of {len(status.practices)} practices submitted; receipts verified")

            await admin.close_round(round_.round_id)
            step(f"Closed round {round_.round_id}")

        frame = running.store.released_rows_frame(round_.round_id)
        label = round_.round_id  # the reports say "Round" before it
        comparison = build_comparison(frame, round_label=label, as_of=as_of)
        print_comparison_table(comparison, console)
        reports = write_practice_reports(comparison, out, round_label=label, as_of=as_of)
        summary = write_summary_report(comparison, out)
        frame.to_csv(out / "released-rows.csv", index=False)
        step(f"Wrote {len(reports)} practice reports and {summary.name} into {out}/")
    finally:
        await running.stop()
    seconds = time.perf_counter() - started
    step(f"Coordinator stopped. Demo finished in {seconds:.1f} s")
    return DemoResult(round_.round_id, as_of, submitted, reports, seconds)


def main() -> None:
    """Entry point of ``python -m coordinator.demo``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--practices", type=int, default=20)
    parser.add_argument("--list-size", type=int, default=4000)
    args = parser.parse_args()
    result = asyncio.run(run_demo(args.out, practices=args.practices, list_size=args.list_size))
    if result.submitted != args.practices:
        raise SystemExit(f"only {result.submitted} of {args.practices} practices submitted")


if __name__ == "__main__":
    main()
