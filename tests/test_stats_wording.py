"""Every probability a verdict sentence claims is true of the numbers (STATS.md S15)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats
from test_comparisons import frame_of
from test_comparisons_frame import round_frame, row

from coordinator.catalogue import CATALOGUE
from coordinator.comparisons import PracticeValue, build_comparison
from coordinator.funnel import FunnelStatus
from coordinator.reports.wording import chance_words, verdict

LESS_THAN = re.compile(r"less than 1 time in ([\d,]+)")
ABOUT = re.compile(r"about (\d+) times? in 100")


def claim_holds(sentence: str, tail: float) -> bool:
    """True when the sentence's one probability claim is true of ``tail``."""
    if m := LESS_THAN.search(sentence):
        return tail < 1 / int(m.group(1).replace(",", ""))
    if m := ABOUT.search(sentence):
        return abs(int(m.group(1)) / 100 - tail) <= 0.005
    raise AssertionError(f"no probability in {sentence!r}")


def test_the_issue_example_25_of_25_against_90_percent() -> None:
    # Nine practices at exactly 90% and one at 25 of 25: exact limits put it above 99.8%,
    # but P(X >= 25 | n = 25, theta0) is 0.07, so it reads "about 7 times in 100".
    counts = [(900, 1000)] * 9 + [(25, 25)]
    frame = frame_of(
        [
            row(f"P{i}", f"P{i}", "L", "flu_vacc_65", numerator=x, denominator=n)
            for i, (x, n) in enumerate(counts)
        ]
    )
    flu = build_comparison(frame).indicators["flu_vacc_65"]
    own = flu.practices["P9"]
    assert own.status is FunnelStatus.ABOVE_998
    theta0 = (9 * 900 + 25) / 9025
    assert own.tail == pytest.approx(stats.binom.sf(24, 25, theta0), rel=1e-12)
    assert own.chance == own.tail  # the model's p (0.0007 one-sided) would claim more
    sentence = verdict(flu.spec, own).sentence
    assert "1,000" not in sentence and "about 7 times in 100" in sentence
    assert claim_holds(sentence, float(stats.binom.sf(24, 25, theta0)))


def test_every_flagged_sentence_of_a_round_claims_only_what_scipy_confirms() -> None:
    checked = 0
    for overdispersion in (True, False):
        c = build_comparison(round_frame(), overdispersion=overdispersion)
        for ic in c.indicators.values():
            for v in ic.practices.values():
                if v.status in (FunnelStatus.WITHIN, FunnelStatus.NO_VALUE):
                    continue
                x, n, theta0 = v.numerator, v.denominator, ic.overall.value / ic.spec.scale
                if ic.spec.kind.value == "proportion":
                    dist = stats.binom(int(n), theta0)
                else:
                    dist = stats.poisson(theta0 * n)
                tail = dist.sf(x - 1) if v.value >= ic.overall.value else dist.cdf(x)
                # Neither the exact tail nor the (adjusted) one-sided p may contradict it.
                chance = max(float(tail), v.p / 2)
                assert claim_holds(verdict(ic.spec, v).sentence, chance)
                checked += 1
    assert checked > 20


@pytest.mark.parametrize("tail", [0.4, 0.07, 0.0149, 0.01, 0.0099, 0.00099, 2e-7, 0.0])
def test_chance_words_are_true_of_the_tail(tail: float) -> None:
    assert claim_holds(chance_words(tail), tail)


def test_small_tails_never_read_as_larger_claims() -> None:
    rng = np.random.default_rng(4)
    for tail in np.concatenate([rng.random(200), rng.random(200) ** 8]):
        assert claim_holds(chance_words(float(tail)), float(tail))


def test_no_tail_means_no_probability_claimed() -> None:
    spec = CATALOGUE["flu_vacc_65"]
    value = PracticeValue("A", 10, 10, 1.0, status=FunnelStatus.ABOVE_95)
    sentence = verdict(spec, value).sentence
    assert "time in" not in sentence and "times in" not in sentence
