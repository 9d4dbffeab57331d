"""``make demo``: three monthly collection rounds, end to end, on embedded defaults.

A coordinator on SQLite with a fresh CA listens on 127.0.0.1; twenty synthetic practices
are generated; each gets an agent, enrolled with a one-time token over the enrolment port
(server TLS) and answering over mutual TLS. One standard round is run at each of the last
three month ends, each practice's extract drifting a little from month to month (the same
practice, a fresh draw of its patients); each round is closed, which stores its
comparison. Before the rounds, a reference-rates study (secure aggregation) pools the
antibiotic rate by sex and age band over the practices, and every round carries those
rates, so the antibiotic rate is also compared indirectly standardised for age and sex.
The last round is printed, and every report is written as ``fedpeer-coordinator report``
writes it (practice HTML and PDF with trends, locality slides, the commissioners'
summary). The agents run the real pipeline: extract -> engine -> disclosure control ->
ledger -> submission -> receipt -> audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console

from agent.cli_network import practice_agent
from agent.client import Status, enrol
from agent.synth import PracticeTraits, generate_practice, generate_practices
from coordinator.admin_client import AdminClient
from coordinator.ca import init_home
from coordinator.comparison_store import comparison_for, trends
from coordinator.console import print_comparison_table
from coordinator.reports import ReportSet, write_round_reports
from coordinator.round_states import PracticePart
from coordinator.server import CoordinatorConfig, start_coordinator
from fedpeer.collection import DefinitionDocument
from fedpeer.definitions import load_round_set, serialize
from fedpeer.studies import Study


def last_month_end(today: date) -> date:
    """The last day of the month before ``today``'s month."""
    return today.replace(day=1) - timedelta(days=1)


def month_ends(last: date, count: int) -> list[date]:
    """``count`` consecutive month ends up to ``last``, oldest first."""
    ends = [last]
    while len(ends) < count:
        ends.append(last_month_end(ends[-1]))
    return ends[::-1]


def drifted_month(
    out: Path, traits: list[PracticeTraits], *, seed: int, month: int, as_of: date
) -> None:
    """The same practices a month on: each draws its patients afresh, so values drift a little."""
    for index, t in enumerate(traits):
        generate_practice(
            out / t.practice_id,
            practice_seed=(seed * 1_000_003 + index) * 31 + month,
            list_size=t.list_size,
            as_of=as_of,
            fmt="csv",
            profile=t,
        )


RATES_OWNER = "The demo federation's analysts (reference rates)"
STUDY_POLLS = 20  # each poll moves every agent one stage on; a study has six


async def reference_rates_study(
    admin: AdminClient,
    traits: list[PracticeTraits],
    agent_homes: list[Path],
    extracts: Path,
    as_of: date,
    step: Callable[[str], None],
) -> str:
    """Pool the standardised definitions' band counts over every practice; the study id.

    Each practice's agent.toml accepts studies from the rates' owner. Only the sums over
    the practices come out (secure aggregation), under the network's disclosure control.
    """
    for agent_home in agent_homes:
        (agent_home / "agent.toml").write_text(
            f'[studies]\nmode = "accept"\nowners = ["{RATES_OWNER}"]\n', encoding="utf-8"
        )
    standardised = [d for d in load_round_set() if d.standardise is not None]
    summary = await admin.create_study(
        owner=RATES_OWNER,
        title="Reference rates by sex and age band",
        purpose="Rates pooled over the federation, to standardise comparisons for age and sex.",
        as_of=as_of,
        min_practices=min(10, len(agent_homes)),
        definitions=[DefinitionDocument.of(d.id, serialize(d)) for d in standardised],
    )
    study_id = Study.from_bytes(summary.study).study_id
    await admin.open_study(study_id)
    agents = [
        practice_agent(agent_home, str(extracts / t.practice_id))
        for t, agent_home in zip(traits, agent_homes, strict=True)
    ]
    await asyncio.gather(*(agent.run_once() for agent in agents))  # each joins
    await admin.close_study(study_id)
    for _ in range(STUDY_POLLS):
        await asyncio.gather(*(agent.run_once() for agent in agents))
        found = await admin.study(study_id)
        if found.state in {"published", "failed"}:
            break
    if found.state != "published":
        raise RuntimeError(f"the reference-rates study {study_id} is {found.state}: {found.detail}")
    step(
        f"Reference-rates study {study_id}: {len(standardised)} definition(s) pooled by sex and "
        f"age band over {len(agents)} practices by secure aggregation; only the sums published"
    )
    return study_id


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for the reader and for tests."""

    round_id: str  # the last round's
    as_of: date
    submitted: int  # in the last round
    reports: ReportSet
    seconds: float
    round_ids: tuple[str, ...] = ()


async def run_demo(
    out: Path,
    *,
    practices: int = 20,
    list_size: int = 4000,
    as_of: date | None = None,
    seed: int = 2026,
    rounds: int = 3,
    pdf: bool = True,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole demo into ``out``; returns what it did."""
    # Wide enough for the comparison table even when output is not a terminal.
    console = console or Console(width=max(Console().width, 120))
    started = time.perf_counter()
    as_of = as_of or last_month_end(date.today())
    assert as_of.day == calendar.monthrange(as_of.year, as_of.month)[1]
    months = month_ends(as_of, rounds)
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
        as_of=months[0],
        fmt="csv",
    )
    extracts = [work / "practices"]
    for month, day in enumerate(months[1:], start=1):
        extracts.append(work / f"practices-{day:%Y-%m}")
        await asyncio.to_thread(
            drifted_month, extracts[-1], traits, seed=seed, month=month, as_of=day
        )

    home = init_home(work / "coordinator")
    running = await start_coordinator(
        CoordinatorConfig(home=home.root, announce_poll_seconds=0.5, study_tick_seconds=0.2)
    )
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

            study_id = await reference_rates_study(
                admin, traits, agent_homes, extracts[0], months[0], step
            )
            documents = [DefinitionDocument.of(d.id, serialize(d)) for d in load_round_set()]
            round_ids = []
            for day, extract in zip(months, extracts, strict=True):
                round_ = await admin.start_round(day, documents, standardise_with=study_id)
                agents = [
                    practice_agent(agent_home, str(extract / t.practice_id))
                    for t, agent_home in zip(traits, agent_homes, strict=True)
                ]
                outcomes = await asyncio.gather(*(agent.run_once() for agent in agents))
                answers = [o for batch in outcomes for o in batch]
                failed = [o for o in answers if o.status is not Status.SUBMITTED]
                for o in failed:
                    console.print(f"[red]round {o.round_id}: {o.status}[/] {o.detail}")
                status = await admin.status(round_.round_id)
                submitted = sum(p.state == PracticePart.SUBMITTED for p in status.practices)
                await admin.close_round(round_.round_id)
                round_ids.append(round_.round_id)
                step(
                    f"Round {round_.round_id} as of {day:%d %B %Y} ({len(documents)} signed "
                    f"definitions): {submitted} of {len(status.practices)} practices "
                    "submitted, receipts verified; closed and its comparison stored"
                )

        last = round_ids[-1]
        _, comparison = comparison_for(running.store, last)
        series = trends(running.store, last)
        print_comparison_table(comparison, console)
        localities = sorted({t.locality for t in traits})
        written = await asyncio.to_thread(
            write_round_reports,
            comparison,
            out,
            trends=series,
            named_localities=localities[:1],  # one locality agreed to be named
            pdf=pdf,
        )
        running.store.released_rows_frame(last).to_csv(out / "released-rows.csv", index=False)
        step(
            f"Wrote {len(written.practices)} practice reports, {len(written.localities)} "
            f"locality slide packs and commissioners.html into {out}/ "
            + (
                f"with {len(written.pdfs)} PDFs"
                if written.pdfs
                else f"(no PDFs: {written.pdf_problem})"
            )
        )
    finally:
        await running.stop()
    seconds = time.perf_counter() - started
    step(f"Coordinator stopped. Demo finished in {seconds:.1f} s")
    return DemoResult(last, as_of, submitted, written, seconds, tuple(round_ids))


def main() -> None:
    """Entry point of ``python -m coordinator.demo``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--practices", type=int, default=20)
    parser.add_argument("--list-size", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(
        run_demo(args.out, practices=args.practices, list_size=args.list_size, rounds=args.rounds)
    )
    if result.submitted != args.practices:
        raise SystemExit(f"only {result.submitted} of {args.practices} practices submitted")


if __name__ == "__main__":
    main()
