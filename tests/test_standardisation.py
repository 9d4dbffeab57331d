"""Indirect age-sex standardisation (STATS.md S17) end to end, over the real wire.

A reference-rates study (secure aggregation: only the sums over the practices come out)
gives the pooled band counts; a round started with it carries them, signed; each real
agent answers its expected count beside its release; the closed round stores each
practice's O / E with its S17 interval; the practice report says it in words. The
expected count is checked against a calculation made here from the extract's CSV files
with pandas, sharing nothing with the engines; and an agent refuses a round whose rates
are malformed, before reading any data, saying why.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import stats
from test_studies import AS_OF, Network, _network

from agent.synth import generate_practice
from coordinator.comparison_store import comparison_for
from coordinator.reports.practice import render_practice_report
from coordinator.reports.workshop import render_locality_slides
from coordinator.round_clock import start_scheduled
from coordinator.rounds import standard_definitions
from coordinator.studies import StudyBook
from coordinator.tables import comparison_standardised
from fedpeer.canonical import canonical_json
from fedpeer.collection import Round, decode_rows
from fedpeer.definitions import SEX_AGE_BANDS, find_standard
from fedpeer.disclosure import round_count
from fedpeer.errors import FedpeerError
from fedpeer.policy import DisclosurePolicy
from fedpeer.signing import sign
from fedpeer.standardise import (
    RATES_FORMAT,
    ReferenceRates,
    Standardisation,
    StandardisationError,
    standardisation_of,
)

ABX = "antibiotic_items_per_1000"


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Network]:
    network = await _network(tmp_path, practices=6, step_seconds=600.0)
    try:
        yield network
    finally:
        await network.admin.close()
        await network.running.stop(0)


def _pooled_rates(study_rows: bytes) -> dict[str, tuple[int | None, int | None]]:
    rows = decode_rows(study_rows)
    return {r.category: (r.numerator, r.denominator) for r in rows if r.indicator == ABX}


def expected_by_hand(extract: Path, as_of: dt.date, rates: dict[str, Fraction]) -> Fraction:
    """E = sum over bands of registered patients x band rate, from the CSV with pandas."""
    p = pd.read_csv(extract / "patients.csv", dtype=str, keep_default_na=False)
    day = pd.Timestamp(as_of)

    def when(column: str) -> pd.Series:
        return pd.to_datetime(p[column].replace("", None))

    registered = (
        (when("registered_from") <= day)
        & (when("registered_to").isna() | (when("registered_to") >= day))
        & (when("date_of_death").isna() | (when("date_of_death") > day))
    )
    born = when("date_of_birth")
    age = (
        day.year - born.dt.year - ((born.dt.month * 100 + born.dt.day) > day.month * 100 + day.day)
    )
    band = (age // 5).clip(upper=17).map(lambda k: "85+" if k == 17 else f"{5 * k}-{5 * k + 4}")
    key = p["sex"] + "." + band
    counts = key[registered].value_counts()
    return sum((int(n) * rates[k] for k, n in counts.items() if k in rates), Fraction(0))


async def test_a_reference_rates_study_standardises_a_round_end_to_end(net: Network) -> None:
    # 1. The study: the standard antibiotic definition, marked standardise, so the vector
    # carries its 36 band pairs. Only pooled rows are published.
    study_id = await net.study([find_standard(ABX)], min_practices=5)
    await net.poll()
    await net.admin.close_study(study_id)
    state, _, detail = await net.until(study_id, {"published", "failed"})
    assert state == "published", detail
    published = await net.admin.study_results(study_id)
    pooled = _pooled_rates(published.rows)
    assert set(pooled) == {"", *SEX_AGE_BANDS}

    # 2. A standard round with those rates: signed with it, verified by every agent.
    round_ = await net.admin.start_round(AS_OF, standard_definitions(), standardise_with=study_id)
    standardisation = standardisation_of(round_)
    assert standardisation is not None and standardisation.study_id == study_id
    (rates,) = standardisation.rates
    assert [(b, n, d) for b, n, d in rates.bands] == [(b, *pooled[b]) for b in SEX_AGE_BANDS]
    await net.poll()
    status = await net.admin.status(round_.round_id)
    assert {p.state for p in status.practices} == {"submitted"}, status
    await net.admin.close_round(round_.round_id)

    # 3. Stored per round: O / E per practice, E from each agent's own bands, by hand here.
    store = net.running.store
    with store.engine.connect() as conn:
        stored = {
            r.practice_id: r
            for r in conn.execute(
                sa.select(comparison_standardised).where(
                    comparison_standardised.c.round_id == round_.round_id
                )
            )
        }
    assert set(stored) == {s.practice_id for s in net.sites}
    by_band = {b: Fraction(n, d) for b, (n, d) in pooled.items() if b and n is not None and d}
    unit = max(by_band.values())
    frame = store.released_rows_frame(round_.round_id)
    for site in net.sites:
        e_true = expected_by_hand(site.extract, AS_OF, by_band)
        units = round_count(math.floor(e_true / unit + Fraction(1, 2)), DisclosurePolicy())
        assert units is not None
        row = stored[site.practice_id]
        assert row.study_id == study_id
        assert row.expected == pytest.approx(float(units * unit), rel=1e-12)
        mine = frame[(frame["practice_id"] == site.practice_id) & (frame["indicator"] == ABX)]
        observed = float(mine[mine["category"] == ""]["numerator"].iloc[0])
        assert row.observed == observed
        assert row.ratio == pytest.approx(observed / row.expected, rel=1e-12)
        if observed < 10:  # Garwood, exact
            low = stats.chi2.ppf(0.025, 2 * observed) / 2 if observed else 0.0
            high = stats.chi2.ppf(0.975, 2 * observed + 2) / 2
        else:  # Byar
            o, o1, z = observed, observed + 1, stats.norm.ppf(0.975)
            low = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
            high = o1 * (1 - 1 / (9 * o1) + z / (3 * math.sqrt(o1))) ** 3
        assert row.low_95 == pytest.approx(low / row.expected, rel=1e-9)
        assert row.high_95 == pytest.approx(high / row.expected, rel=1e-9)

    # 4. The report says it, with the numbers beside it.
    _, comparison = comparison_for(store, round_.round_id)
    assert not any("not standardised for age and sex: this round" in n for n in comparison.notes)
    assert any("indirectly standardised for age and sex" in n for n in comparison.notes)
    first = net.sites[0].practice_id
    html = render_practice_report(comparison, first)
    ratio = comparison.indicators[ABX].standardised[first]
    assert (
        f"Standardised for age and sex: {ratio.ratio:.2f} times the expected "
        f"(95% interval {ratio.low:.2f} to {ratio.high:.2f}" in html
    )
    assert f"study {study_id}" in html
    # The locality's slides show each practice's O / E beside its value, and say what it is.
    locality = comparison.practices[first].locality
    slides = render_locality_slides(comparison, locality, named=True)
    assert "Age-sex standardised: observed / expected (95% interval)" in slides
    assert f"{ratio.ratio:.2f} ({ratio.low:.2f} to {ratio.high:.2f})" in slides
    assert "also shown indirectly standardised for age and sex" in slides

    # 5. The month-end schedule standardises its rounds with the same study, checked when
    # it is set: a study with no published rates is refused there and then.
    with pytest.raises(FedpeerError, match=r"no published results|no study"):
        await net.admin.set_schedule(7, 0, True, "no-such-study")
    setting = await net.admin.set_schedule(7, 0, True, study_id)
    assert setting.standardise_with == study_id
    # The round clock's own step, at a month end it has not covered yet.
    book = StudyBook(store, DisclosurePolicy())
    today = dt.datetime.now(dt.UTC)
    start_scheduled(store, net.running.ca, DisclosurePolicy(), today, book)  # marks this month
    next_month = (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1, hour=0, minute=5)
    scheduled = start_scheduled(store, net.running.ca, DisclosurePolicy(), next_month, book)
    assert scheduled is not None
    carried = standardisation_of(scheduled)
    assert carried is not None and carried.study_id == study_id
    assert carried.rates == standardisation.rates


def _bad_rates(entry: dict) -> bytes:  # type: ignore[type-arg]
    return canonical_json(
        {
            "format": RATES_FORMAT,
            "study_id": "study-x",
            "as_of": AS_OF.isoformat(),
            "practices": 6,
            "rates": [entry],
        }
    )


async def test_an_agent_refuses_a_round_with_malformed_rates_before_reading_data(
    net: Network,
) -> None:
    docs = standard_definitions()
    abx = next(d for d in docs if d.id == ABX)
    flu = next(d for d in docs if d.id == "flu_vacc_65")
    bands = [[b, 10, 100] for b in SEX_AGE_BANDS]
    cases = {
        "missing a band": (
            _bad_rates({"definition": abx.content_hash, "indicator": ABX, "bands": bands[:-1]}),
            "not one entry for each sex and age band",
        ),
        "not marked standardise": (
            _bad_rates({"definition": flu.content_hash, "indicator": "flu", "bands": bands}),
            "the definition is not to be standardised",
        ),
        "a negative count": (
            _bad_rates(
                {
                    "definition": abx.content_hash,
                    "indicator": ABX,
                    "bands": [[b, -1, 100] for b in SEX_AGE_BANDS],
                }
            ),
            "numerator is not a count",
        ),
    }
    store, signer = net.running.store, net.running.ca.signer
    site = net.sites[0]
    for k, (document, why) in enumerate(cases.values()):
        # A coordinator that signs whatever it likes: the agent is the check.
        unsigned = Round(
            round_id=f"forged-{k}",
            as_of=AS_OF,
            policy=DisclosurePolicy(),
            definitions=tuple(docs),
            created_at="2026-12-01T00:00:00.000000Z",
            reference_rates=document,
        )
        with pytest.raises(StandardisationError, match=why):
            standardisation_of(unsigned)  # and so ``start_round`` would not make it
        signed = Round(
            **{
                **unsigned.__dict__,
                "signature": sign(signer.key, unsigned.manifest()),
                "signer_certificate": signer.certificate_der,
            }
        )
        store.add_round(signed, dt.datetime.now(dt.UTC))
        await net.poll([site])
        status = await net.admin.status(signed.round_id)
        part = next(p for p in status.practices if p.practice_id == site.practice_id)
        assert part.state == "refused"
        assert part.detail.startswith("the round's reference rates cannot be used: ")
        assert why in part.detail


def test_the_expected_count_is_released_as_a_count_in_units_of_the_largest_rate(
    tmp_path: Path,
) -> None:
    """One patient moves E by at most the largest rate u, so E / u moves by at most 1."""
    generate_practice(tmp_path, practice_seed=7, list_size=600, as_of=AS_OF, fmt="csv")
    from agent.pipeline import compute_results, expected_count

    defn = find_standard(ABX)
    banded, _ = compute_results(str(tmp_path), AS_OF, [defn], by_age_sex=True)
    bands = tuple(
        (b, 3 * (k % 7) + 1 if k % 5 else None, 200 + k) for k, b in enumerate(SEX_AGE_BANDS)
    )
    rates = ReferenceRates("0" * 64, ABX, bands)
    by_hand = expected_by_hand(tmp_path, AS_OF, rates.rates())
    got = expected_count(defn, rates, banded)
    assert got.indicator == f"{ABX}.expected"
    assert got.measure.value == math.floor(by_hand / rates.unit + Fraction(1, 2))  # type: ignore[union-attr]
    assert rates.unit == max(Fraction(n, d) for _, n, d in bands if n is not None)
    one_more = {b: 0 for b in SEX_AGE_BANDS} | {"male.85+": 1}
    assert rates.expected(one_more) <= rates.unit


def test_a_document_round_trips_and_must_be_canonical() -> None:
    bands = tuple((b, 5, 50) for b in SEX_AGE_BANDS)
    doc = Standardisation("s", AS_OF, 7, (ReferenceRates("a" * 64, ABX, bands),))
    assert Standardisation.from_bytes(doc.to_bytes()) == doc
    with pytest.raises(StandardisationError, match="canonical"):
        Standardisation.from_bytes(doc.to_bytes().replace(b',"practices"', b', "practices"'))
    with pytest.raises(StandardisationError, match="no band has a rate"):
        ReferenceRates("a" * 64, ABX, tuple((b, None, 50) for b in SEX_AGE_BANDS))
