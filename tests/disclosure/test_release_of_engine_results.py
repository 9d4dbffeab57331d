"""Disclosure control over the real engine's results on a synthetic practice, with strata.

The shapes here (profile breakdowns whose total is the list size, skill mix, 36 sex and
age strata per patient-based indicator, patients of unknown sex outside every stratum)
are the ones that reach ``release`` in production.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fedpeer.disclosure import check_release, release
from fedpeer.measures import IndicatorResult
from fedpeer.policy import DisclosurePolicy, Rounding
from fedpeer.release import to_rows

AS_OF = date(2026, 9, 30)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[IndicatorResult]:
    from agent.engine import evaluate
    from agent.extract import open_extract
    from agent.synth import generate_practice
    from fedpeer.definitions.sets import load_standard_set

    out: Path = tmp_path_factory.mktemp("practice")
    generate_practice(out, practice_seed=3, list_size=1500, as_of=AS_OF, fmt="csv")
    with open_extract(out, AS_OF) as extract, extract.connect() as conn:
        return evaluate(load_standard_set(), conn, AS_OF, engine="reference", by_age_sex=True)


@pytest.mark.parametrize(
    "policy",
    [
        DisclosurePolicy(),
        DisclosurePolicy(rounding=Rounding.MIDPOINT6),
        DisclosurePolicy(threshold=10, rounding_base=10, min_mean_count=12),
    ],
    ids=["default", "midpoint6", "stricter"],
)
def test_engine_results_released_pass_the_coordinators_check(
    results: list[IndicatorResult], policy: DisclosurePolicy
) -> None:
    assert any(r.stratum for r in results)
    rows = to_rows(release(results, policy))
    assert check_release(rows, policy) == []
    assert any(r.suppressed for r in rows) and not all(r.suppressed for r in rows)
    # And the raw rows, were they ever sent, would be caught.
    assert check_release(to_rows(results), policy) != []
