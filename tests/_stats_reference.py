"""STATS.md computed again, independently of ``coordinator.stats``, for the tests to compare.

Written from the formulas as printed in /work/shared/STATS.md, with scipy's exact
distributions (binom, poisson, chi2, norm), scipy's Wilson interval, percentileofscore
(kind="mean") and false_discovery_control (Benjamini-Hochberg). It imports nothing from
``coordinator``: a shared mistake would need to be made twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

Z95 = float(stats.norm.ppf(0.975))
Z998 = float(stats.norm.ppf(0.999))
GROUP_MINIMUM = 5
LEVELS = {"low95": (0.025, -Z95), "high95": (0.975, Z95), "low998": (0.001, -Z998)}
LEVELS["high998"] = (0.999, Z998)


def close(a: float, b: float) -> bool:
    """STATS.md's agreement: within 1e-9 x max(1, |b|)."""
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _dist(kind: str, n: float, theta0: float):
    return stats.binom(int(n), theta0) if kind == "proportion" else stats.poisson(theta0 * n)


def exact_limit(kind: str, n: float, theta0: float, p: float) -> float:
    """S6/S7: r_p the smallest r with F(r) >= p, alpha from F, (r_p - alpha) / n, clipped."""
    if kind == "proportion" and theta0 in (0.0, 1.0):
        return theta0
    if kind == "rate" and theta0 == 0.0:
        return 0.0
    dist = _dist(kind, n, theta0)
    r = float(dist.ppf(p))
    f, f_before = float(dist.cdf(r)), float(dist.cdf(r - 1))
    limit = (r - (f - p) / (f - f_before)) / n
    return min(max(limit, 0.0), 1.0) if kind == "proportion" else max(limit, 0.0)


def _y(kind: str, v: float) -> float:
    return math.asin(math.sqrt(v)) if kind == "proportion" else math.sqrt(v)


def _back(kind: str, y: float) -> float:
    if kind == "proportion":
        return math.sin(min(max(y, 0.0), math.pi / 2)) ** 2
    return max(y, 0.0) ** 2


def type7(xs: Sequence[float], q: float) -> float:
    """R's quantile type 7, from its definition: x[h] interpolated at h = (n - 1) q."""
    x = sorted(xs)
    h = (len(x) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(x) - 1)
    return x[lo] + (h - lo) * (x[hi] - x[lo])


def phi_tau2(z: Sequence[float], n: Sequence[float]) -> tuple[float, float]:
    """S9 and S10 from the formulas: Winsorised mean square, then the additive tau2."""
    lo, hi = type7(z, 0.10), type7(z, 0.90)
    count = len(z)
    phi = sum(min(max(v, lo), hi) ** 2 for v in z) / count
    w = [4 * m for m in n]
    if count * phi <= count - 1:
        return phi, 0.0
    return phi, (count * phi - (count - 1)) / (sum(w) - sum(x * x for x in w) / sum(w))


def _flag(v: float, low: float, high: float) -> str:
    return "higher" if v > high else "lower" if v < low else "within"


def interval(kind: str, x: float, n: float) -> tuple[float, float]:
    """S16: scipy's Wilson interval, or Garwood's from chi2 quantiles."""
    if kind == "proportion":
        ci = stats.binomtest(int(x), int(n)).proportion_ci(0.95, method="wilson")
        return float(ci.low), float(ci.high)
    low = 0.0 if x == 0 else float(stats.chi2.ppf(0.025, 2 * x)) / 2
    return low / n, float(stats.chi2.ppf(0.975, 2 * x + 2)) / 2 / n


def tail(kind: str, x: float, n: float, theta0: float) -> float:
    """The exact one-sided tail under theta0, in the direction of the departure."""
    if kind == "proportion":
        dist = stats.binom(int(n), min(max(theta0, 0.0), 1.0))
    else:
        dist = stats.poisson(theta0 * n)
    return float(dist.sf(x - 1)) if x >= theta0 * n else float(dist.cdf(x))


def funnel(
    kind: str, num: Sequence[float], den: Sequence[float], *, overdispersion: bool = True
) -> list[dict[str, object]]:
    """Every practice's row of the offline interface; None for an empty cell."""
    rows: list[dict[str, object]] = []
    for x, n in zip(num, den, strict=True):
        ok = not (math.isnan(x) or math.isnan(n)) and n > 0 and x >= 0
        ok = ok and (kind == "rate" or x <= n)
        row: dict[str, object] = {"valued": ok}
        if ok:
            row["value"] = x / n
            row["ci_low"], row["ci_high"] = interval(kind, x, n)
        rows.append(row)
    valued = [r for r in rows if r["valued"]]
    pairs = [(x, n) for x, n, r in zip(num, den, rows, strict=True) if r["valued"]]
    if len(valued) < GROUP_MINIMUM:
        return rows
    theta0 = sum(x for x, _ in pairs) / sum(n for _, n in pairs)
    target = _y(kind, theta0)
    z0 = [(_y(kind, x / n) - target) * 2 * math.sqrt(n) for x, n in pairs]
    phi, tau2 = phi_tau2(z0, [n for _, n in pairs])
    adjusted = overdispersion and tau2 > 0
    values = [x / n for x, n in pairs]
    p_values = []
    for row, (x, n), z in zip(valued, pairs, z0, strict=True):
        s2 = 1 / (4 * n)
        row.update(theta0=theta0, phi=phi, tau2=tau2)
        for name, (p, zq) in LEVELS.items():
            row[f"exact_{name}"] = exact_limit(kind, n, theta0, p)
            wide = _back(kind, target + zq * math.sqrt(s2 + tau2))
            row[name] = wide if adjusted else row[f"exact_{name}"]
        zz = (_y(kind, x / n) - target) / math.sqrt(s2 + tau2) if overdispersion else z
        row["z"], row["p"] = zz, 2 * float(stats.norm.sf(abs(zz)))
        p_values.append(row["p"])
        v = row["value"]
        row["flag998"] = _flag(v, row["low998"], row["high998"])
        row["flag95"] = _flag(v, row["low95"], row["high95"])
        pct = float(stats.percentileofscore(values, v, kind="mean"))
        row["percentile"], row["decile"] = pct, min(math.floor(pct / 10) + 1, 10)
        row["tail"] = tail(kind, x, n, theta0)
    for row, q in zip(valued, stats.false_discovery_control(p_values, method="bh"), strict=True):
        row["q"] = float(q)
    return rows
