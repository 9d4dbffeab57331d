"""Studies end to end: real agents, real mutual TLS, secure aggregation, pooled results only.

Each test starts a coordinator in-process (fresh CA, SQLite, ports chosen by the OS, a
short stage time so that dropouts move the study on quickly), enrols practices with
one-time tokens and lets the real agents (``practice_agent``: rounds and studies) take
their steps, poll by poll. The test then reads everything the coordinator stored,
logged, and serves to an admin, looking for any single practice's numbers.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from _coordinator_helpers import admin

from agent.cli_network import practice_agent
from agent.client import enrol
from agent.pipeline import compute_results
from agent.studies import Decision
from agent.studies import StudyBook as PracticeStudies
from agent.synth import generate_practice
from coordinator.admin_client import AdminClient
from coordinator.ca import init_home
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from coordinator.studies import StudyBook, advance, pooled_policy
from coordinator.study_client import StudyClient, export, results_frame
from coordinator.tables import metadata, studies, study_steps
from fedpeer.collection import DefinitionDocument, decode_rows, encode_rows
from fedpeer.definitions import find_standard, load_standard_set, serialize
from fedpeer.disclosure import check_release, release
from fedpeer.errors import IdentityError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import to_rows
from fedpeer.studies import Study, from_vector, needs_strata, to_vector

AS_OF = dt.date(2026, 9, 30)
STEP_SECONDS = 600.0  # dropouts are modelled by ``Network.time_passes``, not by waiting
OWNER = "Dr A Analyst, University of Example"
ACCEPT = f'[studies]\nmode = "accept"\nowners = ["{OWNER}"]\n'


@dataclass
class Site:
    practice_id: str
    home: Path
    extract: Path

    async def run(self) -> None:
        await practice_agent(self.home, str(self.extract)).run_once()

    def local(self, study_id: str):  # type: ignore[no-untyped-def]
        book = PracticeStudies.at_home(self.home)
        try:
            return book.get(study_id)
        finally:
            book.close()

    def vector(self, definitions: Sequence) -> list[int]:  # type: ignore[type-arg]
        strata = needs_strata(definitions)  # a standardised definition's bands travel too
        results, _ = compute_results(str(self.extract), AS_OF, definitions, by_age_sex=strata)
        return to_vector(definitions, results)


@dataclass
class Network:
    running: RunningCoordinator
    admin: AdminClient
    sites: list[Site]

    async def study(
        self,
        definitions: Sequence,  # type: ignore[type-arg]
        min_practices: int = 5,
        owner: str = OWNER,
    ) -> str:
        summary = await self.admin.create_study(
            owner=owner,
            title="Diabetes control and flu vaccination across practices",
            purpose="To see how far practices' diabetes control differs, without sharing data.",
            as_of=AS_OF,
            min_practices=min_practices,
            definitions=[DefinitionDocument.of(d.id, serialize(d)) for d in definitions],
        )
        study_id = Study.from_bytes(summary.study).study_id
        await self.admin.open_study(study_id)
        return study_id

    async def poll(self, sites: Sequence[Site] | None = None) -> None:
        for site in sites if sites is not None else self.sites:
            await site.run()

    async def state(self, study_id: str) -> tuple[str, str, str]:
        summary = await self.admin.study(study_id)
        return summary.state, summary.stage, summary.detail

    async def until(
        self,
        study_id: str,
        states: set[str],
        sites: Sequence[Site] | None = None,
        *,
        waiting_is_over: bool = False,
    ) -> tuple[str, str, str]:
        """Poll until the study reaches one of ``states``; with ``waiting_is_over``, each
        stage's time runs out after every practice polled (the rest have dropped out)."""
        for _ in range(40):
            state = await self.state(study_id)
            if state[0] in states:
                return state
            await self.poll(sites)
            if waiting_is_over and await self.state(study_id) == state:
                self.time_passes(study_id)  # everyone here has answered: no one else will
        raise AssertionError(f"study {study_id} stuck at {await self.state(study_id)}")

    def time_passes(self, study_id: str) -> None:
        """The stage's time is up: the coordinator's own clock step, an hour from now."""
        book = StudyBook(self.running.store, DisclosurePolicy())
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        advance(book, study_id, later, STEP_SECONDS)

    async def stage(self, study_id: str, stage: str) -> None:
        for _ in range(80):
            if (await self.state(study_id))[1] == stage:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"study {study_id} never reached {stage}")


async def _network(
    tmp_path: Path, practices: int, step_seconds: float, db_url: str | None = None
) -> Network:
    init_home(tmp_path / "coordinator")
    config = CoordinatorConfig(
        home=tmp_path / "coordinator",
        db_url=db_url,
        announce_poll_seconds=0.2,
        study_step_seconds=step_seconds,
        study_tick_seconds=0.1,
    )
    running = await start_coordinator(config)
    adm = admin(running)
    sites = []
    for k in range(practices):
        practice_id = f"S{k:02d}"
        token, _ = await adm.invite(practice_id, f"Practice {k}", "North" if k % 2 else "South")
        home = tmp_path / practice_id
        await enrol(running.address, running.enrol_port, token, home)
        (home / "agent.toml").write_text(ACCEPT, encoding="utf-8")
        extract = tmp_path / f"{practice_id}-extract"
        generate_practice(extract, practice_seed=100 + k, list_size=250, as_of=AS_OF, fmt="csv")
        sites.append(Site(practice_id, home, extract))
    return Network(running, adm, sites)


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Network]:
    network = await _network(tmp_path, practices=10, step_seconds=STEP_SECONDS)
    try:
        yield network
    finally:
        await network.admin.close()
        await network.running.stop(0)


def _expected_rows(sites: Sequence[Site], definitions: Sequence) -> list:  # type: ignore[type-arg]
    total = np.sum([s.vector(definitions) for s in sites], axis=0)
    pooled = from_vector(definitions, [int(v) for v in total])
    return list(decode_rows(encode_rows(to_rows(release(pooled, DisclosurePolicy())))))


TWELVE = load_standard_set()


# -- a study end to end ------------------------------------------------------------------


async def test_a_study_over_ten_practices_publishes_only_the_pooled_sum(
    net: Network, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert len(TWELVE) == 12
    study_id = await net.study(TWELVE)
    await net.poll()
    summary = await net.admin.study(study_id)
    assert sorted(m.practice_id for m in summary.members if m.state == "joined") == [
        s.practice_id for s in net.sites
    ]
    await net.admin.close_study(study_id)
    state, _, detail = await net.until(study_id, {"published", "failed"})
    assert state == "published", detail

    results = await net.admin.study_results(study_id)
    assert results.practices == 10
    assert list(decode_rows(results.rows)) == _expected_rows(net.sites, TWELVE)

    # What the coordinator stored, logged and serves: no practice's own numbers.
    vectors = {s.practice_id: s.vector(TWELVE) for s in net.sites}
    distinctive = {
        pid: {v for v in vec if v >= 100 and sum(v in o for o in vectors.values()) == 1}
        for pid, vec in vectors.items()
    }
    assert any(distinctive.values())
    # Numbers the study's own text holds (codes, thresholds, "per 1000", the year) and the
    # published pooled results are not a practice's (a pooled count may equal one practice's
    # by chance); every other standalone number stored, logged or served is looked at.
    published = str(decode_rows(results.rows))
    background = _numbers(summary.study.decode().replace('"', " ") + " 2026 " + published)
    stored = _numbers(_everything_stored(net.running))
    logged = _numbers("\n".join(r.getMessage() for r in caplog.records))
    served = _numbers(
        "\n".join(
            f"{s.study.decode()} {s.state} {s.stage} {s.detail} {list(s.members)}"
            for s in await net.admin.studies()
        )
        + str(decode_rows((await net.admin.study_results(study_id)).rows))
    )
    for pid, numbers in distinctive.items():
        leaked = (numbers - background) & (stored | logged | served)
        assert not leaked, (pid, leaked)
    with net.running.store.engine.connect() as conn:
        masked = conn.execute(
            sa.select(study_steps.c.practice_id, study_steps.c.message).where(
                study_steps.c.stage == "masked"
            )
        ).all()
    assert len(masked) == 10
    for pid, message in masked:
        body = json.loads(message)["body"]
        numbers = np.frombuffer(base64.b64decode(body["masked"]), dtype="<u8")
        assert not {int(x) for x in numbers} & set(vectors[pid])


def _numbers(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", text)}


def _everything_stored(running: RunningCoordinator) -> str:
    """Every row of every table, as text (bytes decoded where they are text)."""
    out = []
    with running.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("utf-8", "replace")
                    out.append(str(value))
    return "\n".join(out)


async def test_a_study_survives_dropouts_after_key_exchange(net: Network) -> None:
    """Two of ten practices (20%) vanish after sending their shares: the sum over the
    other eight is published, exactly."""
    definitions = [find_standard("dm_hba1c_le58"), find_standard("flu_vacc_65")]
    study_id = await net.study(definitions)
    await net.poll()
    await net.admin.close_study(study_id)
    await net.poll()  # keys
    await net.stage(study_id, "shares")
    await net.poll()  # shares: all ten send theirs
    await net.stage(study_id, "masked")
    stayers = net.sites[2:]
    state, _, detail = await net.until(
        study_id, {"published", "failed"}, stayers, waiting_is_over=True
    )
    assert state == "published", detail
    results = await net.admin.study_results(study_id)
    assert results.practices == 8
    assert list(decode_rows(results.rows)) == _expected_rows(stayers, definitions)


async def test_too_few_left_after_key_exchange_publishes_nothing(net: Network) -> None:
    definitions = [find_standard("dm_hba1c_le58")]
    study_id = await net.study(definitions, min_practices=3)
    await net.poll()
    await net.admin.close_study(study_id)
    await net.poll()
    await net.stage(study_id, "shares")
    await net.poll()
    await net.stage(study_id, "masked")
    # Six are needed (more than half of ten); only five stay.
    state, _, detail = await net.until(
        study_id, {"published", "failed"}, net.sites[:5], waiting_is_over=True
    )
    assert state == "failed" and "6 are needed" in detail
    with pytest.raises(Exception, match="has no results"):
        await net.admin.study_results(study_id)


async def test_a_coordinator_lying_about_who_dropped_out_is_caught(net: Network) -> None:
    """The coordinator has everyone's masked vector. To unmask practice X it needs X's
    self-mask seed (given when X survived) and X's mask key (given when X dropped out).
    It tells half the practices that X's vector arrived and the other half that it did
    not. Each practice signs the list it saw; none will reveal a share unless more than
    half of the members signed the very same list. The study fails; nothing of X leaks."""
    definitions = [find_standard("dm_hba1c_le58")]
    study_id = await net.study(definitions, min_practices=3)
    await net.poll()
    await net.admin.close_study(study_id)
    for stage in ("shares", "masked", "consistency"):
        await net.poll()
        await net.stage(study_id, stage)
    target, first, second = net.sites[0], net.sites[1:6], net.sites[6:]
    await net.poll(first)  # they sign the list with X in it
    engine = net.running.store.engine
    with engine.begin() as conn:
        kept = conn.execute(
            sa.select(study_steps).where(
                study_steps.c.study_id == study_id,
                study_steps.c.stage == "masked",
                study_steps.c.practice_id == target.practice_id,
            )
        ).one()
        conn.execute(
            sa.delete(study_steps).where(
                study_steps.c.study_id == study_id,
                study_steps.c.stage == "masked",
                study_steps.c.practice_id == target.practice_id,
            )
        )
    await net.poll(second)  # they sign the list without X
    # The coordinator restores X's vector and forces the unmasking stage on everyone.
    with engine.begin() as conn:
        conn.execute(study_steps.insert().values(**kept._mapping))
        conn.execute(
            sa.update(studies)
            .where(studies.c.study_id == study_id)
            .values(state="aggregating", stage="unmask", detail="")
        )
    await net.poll(first)  # shown the list with X: only five signed it, six are needed
    with engine.begin() as conn:  # and now the list without X, to the others
        conn.execute(
            sa.delete(study_steps).where(
                study_steps.c.study_id == study_id,
                study_steps.c.stage == "masked",
                study_steps.c.practice_id == target.practice_id,
            )
        )
    await net.poll(second)
    with engine.connect() as conn:
        unmasked = conn.execute(
            sa.select(study_steps.c.practice_id).where(
                study_steps.c.study_id == study_id, study_steps.c.stage == "unmask"
            )
        ).all()
    assert unmasked == []
    reasons = [s.local(study_id).why for s in first + second]
    assert all("dropped out" in r for r in reasons), reasons
    assert all(s.local(study_id).decision is Decision.REFUSED for s in first + second)


async def test_no_two_sums_of_a_question_differ_by_fewer_than_the_minimum(
    net: Network,
) -> None:
    """A first study sums ten practices; a second asks the same question of the same date
    with one practice left out: subtracting would give that practice's value away. The
    nine refuse to confirm the list, and the second study fails."""
    definitions = [find_standard("dm_hba1c_le58")]
    first = await net.study(definitions, min_practices=3)
    await net.poll()
    await net.admin.close_study(first)
    assert (await net.until(first, {"published", "failed"}))[0] == "published"

    second = await net.study(definitions, min_practices=3)
    nine = net.sites[1:]
    await net.poll(nine)
    await net.admin.close_study(second)
    state, _, detail = await net.until(second, {"published", "failed"}, nine, waiting_is_over=True)
    assert state == "failed", detail
    assert "differ from an earlier sum" in (nine[0].local(second).why or "")


async def test_practices_opt_in_hold_decline_and_withdraw(net: Network) -> None:
    held, declining, leaving = net.sites[0], net.sites[1], net.sites[2]
    (held.home / "agent.toml").write_text("", encoding="utf-8")  # hold: the default
    (declining.home / "agent.toml").write_text('[studies]\nmode = "decline"\n')
    study_id = await net.study([find_standard("flu_vacc_65")])
    await net.poll()
    members = {m.practice_id: m.state for m in (await net.admin.study(study_id)).members}
    assert held.practice_id not in members
    assert members[declining.practice_id] == "declined"
    assert held.local(study_id).decision is Decision.HELD

    book = PracticeStudies.at_home(held.home)
    book.decide(study_id, Decision.ACCEPTED, "approved by the practice")
    book.close()
    book = PracticeStudies.at_home(leaving.home)
    book.decide(study_id, Decision.WITHDRAWN, "withdrawn by the practice")
    book.close()
    await net.poll()
    members = {m.practice_id: m.state for m in (await net.admin.study(study_id)).members}
    assert members[held.practice_id] == "joined"
    assert members[leaving.practice_id] == "withdrawn"
    await net.admin.close_study(study_id)
    state, _, detail = await net.until(study_id, {"published", "failed"})
    assert state == "published", detail
    assert (await net.admin.study_results(study_id)).practices == 8


async def test_only_the_owner_reads_results_as_a_dataframe_csv_and_parquet(
    net: Network, tmp_path: Path
) -> None:
    definitions = [find_standard("flu_vacc_65")]
    study_id = await net.study(definitions)
    await net.poll()
    await net.admin.close_study(study_id)
    assert (await net.until(study_id, {"published", "failed"}))[0] == "published"
    ca = net.running.ca.issuer()
    clients = {}
    for name in (OWNER, "Someone Else"):
        key, cert = ca.issue_analyst(name)
        from fedpeer.identity import cert_to_pem, key_to_pem

        clients[name] = StudyClient(
            net.running.address, key_to_pem(key), cert_to_pem(cert), ca.cert_pem
        )
    async with clients[OWNER] as owner:
        frame = await owner.results(study_id)
        assert [s.study_id for s, _ in await owner.studies()] == [study_id]
    assert frame.attrs["practices"] == 10
    assert list(frame["indicator"]) == ["flu_vacc_65"]
    assert export(frame, tmp_path / "r.csv").read_text().startswith("indicator,category")
    assert export(frame, tmp_path / "r.parquet").stat().st_size > 0
    async with clients["Someone Else"] as other:
        with pytest.raises(IdentityError, match="not yours"):
            await other.results(study_id)
        assert await other.studies() == []
    admin_view = results_frame(await net.admin.study_results(study_id))
    assert admin_view.equals(frame)


async def test_a_study_on_the_postgresql_store(tmp_path: Path, postgres_url: str) -> None:
    """The production store: five practices, one dropping out after the key exchange."""
    network = await _network(tmp_path, practices=5, step_seconds=STEP_SECONDS, db_url=postgres_url)
    try:
        definitions = [find_standard("dm_hba1c_le58")]
        study_id = await network.study(definitions, min_practices=3)
        await network.poll()
        await network.admin.close_study(study_id)
        await network.poll()
        await network.stage(study_id, "shares")
        await network.poll()
        await network.stage(study_id, "masked")
        stayers = network.sites[1:]
        state, _, detail = await network.until(
            study_id, {"published", "failed"}, stayers, waiting_is_over=True
        )
        assert state == "published", detail
        results = await network.admin.study_results(study_id)
        assert results.practices == 4
        assert list(decode_rows(results.rows)) == _expected_rows(stayers, definitions)
    finally:
        await network.admin.close()
        await network.running.stop(0)


def test_a_study_budget_buys_noise_on_the_pooled_counts() -> None:
    """A budget of rho over k parts buys discrete Gaussian noise of scale sqrt(k / 2 rho)."""
    definitions = [find_standard("dm_hba1c_le58"), find_standard("gp_f2f_minutes")]
    study = Study(
        study_id="s",
        owner="o",
        title="t",
        purpose="p",
        as_of=AS_OF,
        min_practices=3,
        definitions=tuple(DefinitionDocument.of(d.id, serialize(d)) for d in definitions),
        budget_rho=0.75,
    )
    policy = pooled_policy(study, DisclosurePolicy())
    assert policy.noise == "discrete_gaussian"
    assert policy.noise_scale == pytest.approx((3 / (2 * 0.75)) ** 0.5)  # a mean counts twice
    assert pooled_policy(replace(study, budget_rho=0.0), DisclosurePolicy()) == DisclosurePolicy()
    # A standardised definition's band counts carry each patient again: it counts twice.
    standardised = find_standard("antibiotic_items_per_1000")
    assert standardised.standardise is not None
    banded = replace(
        study,
        definitions=(
            *study.definitions,
            DefinitionDocument.of(standardised.id, serialize(standardised)),
        ),
    )
    assert pooled_policy(banded, DisclosurePolicy()).noise_scale == pytest.approx(
        (5 / (2 * 0.75)) ** 0.5
    )


async def test_a_noisy_study_publishes_rows_the_network_policy_accepts(tmp_path: Path) -> None:
    network = await _network(tmp_path, practices=4, step_seconds=STEP_SECONDS)
    try:
        summary = await network.admin.create_study(
            owner=OWNER,
            title="Noisy",
            purpose="Noise on the pooled counts.",
            as_of=AS_OF,
            min_practices=3,
            definitions=[
                DefinitionDocument.of("flu_vacc_65", serialize(find_standard("flu_vacc_65")))
            ],
            budget_rho=0.5,
        )
        study_id = Study.from_bytes(summary.study).study_id
        with pytest.raises(Exception, match="under another id"):
            await network.admin.create_study(
                owner=OWNER,
                title="Mislabelled",
                purpose="A definition sent under another id.",
                as_of=AS_OF,
                min_practices=3,
                definitions=[DefinitionDocument.of("flu", serialize(find_standard("flu_vacc_65")))],
            )
        await network.admin.open_study(study_id)
        await network.poll()
        await network.admin.close_study(study_id)
        state, _, detail = await network.until(study_id, {"published", "failed"})
        assert state == "published", detail
        rows = list(decode_rows((await network.admin.study_results(study_id)).rows))
        assert check_release(rows, DisclosurePolicy()) == []
    finally:
        await network.admin.close()
        await network.running.stop(0)
