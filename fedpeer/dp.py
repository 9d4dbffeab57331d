"""Optional differential privacy: noise on every count, through OpenDP, before rounding.

When a policy names ``noise`` (discrete Gaussian or discrete Laplace, with a scale), each
*atomic* count gets independent noise from OpenDP's samplers, and ``fedpeer.disclosure``
then applies the usual rules to the noisy counts. Atomic counts are those no other count
is built from, so that one unit counted moves exactly one of them by one in each
indicator, and totals stay consistent:

- a proportion: the numerator and its complement (the denominator is their sum);
- a breakdown: its cells and the unlisted remainder (the total is their sum);
- strata with their whole: the strata and the remainder (the whole is their sum);
- a rate: numerator and denominator; a count: itself; a mean: its count only.

**Noise, then rounding.** Rounding and suppression after noise are post-processing of a
differentially private result, so the guarantee holds whatever they do, and the released
values stay on the rounding grid that the coordinator checks. Rounding first and adding
noise after would leave values off the grid, and suppression decided on true counts
would leak through which cells are withheld.

**Cost.** One unit moves one atom per indicator by one, so a release of k indicators costs
k times the cost at sensitivity 1 (OpenDP's own privacy map): rho = k / (2 scale^2) for
the discrete Gaussian (zero-concentrated DP); for the discrete Laplace epsilon = k / scale,
accounted as rho = epsilon^2 / 2. The unit is what the indicator counts: a patient for
patient-based indicators, an appointment or an item for the others (one patient's many
appointments are not bounded here). A mean's value is not noised: the guarantee covers
counts only, and the minimum count and rounding still protect means.

Randomness comes from OpenDP's cryptographically secure sampler: every call differs, so
the agent's ledger must record the first noisy release and return it for every repeat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache

from fedpeer.disclosure import release
from fedpeer.errors import PolicyError
from fedpeer.measures import Breakdown, Count, IndicatorResult, Mean, Measure, Proportion, Rate
from fedpeer.policy import DisclosurePolicy, Noise

Sampler = Callable[[int], int]


@cache
def _measurement(noise: Noise, scale: float) -> object:
    try:
        import opendp.prelude as dp
    except ImportError as exc:  # pragma: no cover - opendp is a declared dependency
        raise PolicyError("differential privacy needs the opendp package") from exc
    dp.enable_features("contrib")
    space = dp.atom_domain(T=int), dp.absolute_distance(T=int)
    if noise == Noise.DISCRETE_GAUSSIAN:
        return space >> dp.m.then_gaussian(scale=scale)
    return space >> dp.m.then_laplace(scale=scale)


def opendp_sampler(policy: DisclosurePolicy) -> Sampler:
    """A function adding the policy's noise to one integer, through OpenDP."""
    if policy.noise == Noise.NONE:
        raise PolicyError("this policy adds no noise")
    measurement = _measurement(policy.noise, policy.noise_scale)
    return lambda x: int(measurement(x))  # type: ignore[operator]


def cost_rho(results: Sequence[IndicatorResult], policy: DisclosurePolicy) -> float:
    """The privacy loss of one noisy release of ``results``, as zero-concentrated rho."""
    if policy.noise == Noise.NONE:
        return 0.0
    per_indicator = float(_measurement(policy.noise, policy.noise_scale).map(1))  # type: ignore[attr-defined]
    if policy.noise == Noise.DISCRETE_LAPLACE:
        per_indicator = per_indicator**2 / 2
    return len({r.indicator for r in results}) * per_indicator


def _noisy(n: int | None, add: Sampler) -> int:
    if n is None:
        raise ValueError("a raw measure must have every count")
    return max(0, add(n))


def _noisy_measure(m: Measure, add: Sampler) -> Measure:
    if isinstance(m, Count):
        return Count(_noisy(m.value, add))
    if isinstance(m, Proportion):
        num = _noisy(m.numerator, add)
        comp = _noisy(_diff(m.denominator, m.numerator), add)
        return Proportion(num, num + comp)
    if isinstance(m, Rate):
        return Rate(_noisy(m.numerator, add), _noisy(m.denominator, add), m.per)
    if isinstance(m, Mean):
        return Mean(_noisy(m.count, add), m.mean)
    assert isinstance(m, Breakdown)
    cells = tuple((cat, _noisy(c, add)) for cat, c in m.cells)
    listed = sum(_c(c) for _, c in m.cells)
    remainder = 0 if m.total is None else _noisy(m.total - listed, add)
    return Breakdown(cells, sum(c for _, c in cells) + remainder)


def _c(n: int | None) -> int:
    if n is None:
        raise ValueError("a raw measure must have every count")
    return n


def _diff(a: int | None, b: int | None) -> int:
    return _c(a) - _c(b)


def _whole_from_strata(whole: Measure, strata: list[Measure], add: Sampler) -> Measure:
    """Noise the remainder of ``whole`` beyond ``strata`` (raw) and add the noisy strata."""

    def total(attr: str, ms: list[Measure]) -> int:
        return sum(_c(getattr(m, attr)) for m in ms)

    if isinstance(whole, Proportion):
        rn = _diff(whole.numerator, total("numerator", strata))
        rd = _diff(whole.denominator, total("denominator", strata))
        noisy_rn, noisy_rc = _noisy(rn, add), _noisy(rd - rn, add)
        return Proportion(noisy_rn, noisy_rn + noisy_rc)  # the remainder; strata added later
    if isinstance(whole, Rate):
        return Rate(
            _noisy(_diff(whole.numerator, total("numerator", strata)), add),
            _noisy(_diff(whole.denominator, total("denominator", strata)), add),
            whole.per,
        )
    if isinstance(whole, Mean):
        return Mean(_noisy(_diff(whole.count, total("count", strata)), add), whole.mean)
    if isinstance(whole, Count):
        return Count(_noisy(_diff(whole.value, total("value", strata)), add))
    raise ValueError("strata of a breakdown are not supported with noise")


def _add(a: Measure, b: Measure) -> Measure:
    if isinstance(a, Proportion) and isinstance(b, Proportion):
        return Proportion(
            _c(a.numerator) + _c(b.numerator),
            _c(a.denominator) + _c(b.denominator),
        )
    if isinstance(a, Rate) and isinstance(b, Rate):
        return Rate(
            _c(a.numerator) + _c(b.numerator),
            _c(a.denominator) + _c(b.denominator),
            a.per,
        )
    if isinstance(a, Mean) and isinstance(b, Mean):
        return Mean(_c(a.count) + _c(b.count), a.mean)
    assert isinstance(a, Count) and isinstance(b, Count)
    return Count(_c(a.value) + _c(b.value))


def add_noise(results: Sequence[IndicatorResult], add: Sampler) -> list[IndicatorResult]:
    """Raw results with noise on every atomic count; sums rebuilt from their noisy parts."""
    out: list[IndicatorResult | None] = [None] * len(results)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        groups[r.indicator].append(i)
    for members in groups.values():
        strata = [i for i in members if results[i].stratum]
        wholes = [i for i in members if not results[i].stratum]
        for i in strata:
            out[i] = IndicatorResult(
                results[i].indicator, _noisy_measure(results[i].measure, add), results[i].stratum
            )
        for i in wholes:
            r = results[i]
            if strata and not isinstance(r.measure, Breakdown):
                raw_strata = [results[j].measure for j in strata]
                whole: Measure = _whole_from_strata(r.measure, raw_strata, add)
                for j in strata:
                    whole = _add(whole, out[j].measure)  # type: ignore[union-attr]
                out[i] = IndicatorResult(r.indicator, whole)
            else:
                out[i] = IndicatorResult(r.indicator, _noisy_measure(r.measure, add))
    return [r for r in out if r is not None]


def release_with_noise(
    results: Sequence[IndicatorResult], policy: DisclosurePolicy, add: Sampler | None = None
) -> list[IndicatorResult]:
    """Disclosure control under ``policy``, with its noise first when it names any."""
    if policy.noise == Noise.NONE:
        return release(results, policy)
    return release(add_noise(results, add or opendp_sampler(policy)), policy)
