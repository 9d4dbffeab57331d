"""Period arithmetic for indicator definitions (INDICATORS.md, "Shared terms").

Every window an indicator uses is a pair of constant dates computed from ``as_of``, so
engines can push the comparison down to the database as plain date bounds.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

ONE_DAY = timedelta(days=1)


def is_leap(year: int) -> bool:
    """Whether ``year`` has a 29 February."""
    return calendar.isleap(year)


def is_month_end(day: date) -> bool:
    """True when ``day`` is the last day of its month."""
    return day.day == calendar.monthrange(day.year, day.month)[1]


def minus_months(day: date, months: int) -> date:
    """``day`` minus whole calendar months; a day past the month's end clamps to its last day."""
    if months < 0:
        raise ValueError("months must not be negative")
    index = day.year * 12 + (day.month - 1) - months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def minus_years(day: date, years: int) -> date:
    """``day`` minus whole calendar years; 29 February becomes 28 February."""
    return minus_months(day, 12 * years)


def window_start(as_of: date, months: int) -> date:
    """First day of the window "within N months" ending on ``as_of`` (inclusive)."""
    return minus_months(as_of, months) + ONE_DAY


def period_start(as_of: date) -> date:
    """First day of the period: the 12 months that end on ``as_of``."""
    return minus_years(as_of, 1) + ONE_DAY


def age_on(date_of_birth: date, as_of: date) -> int:
    """Completed years on ``as_of``; a 29 February birthday falls on 1 March in other years."""
    birthday = (date_of_birth.month, date_of_birth.day)
    if birthday == (2, 29) and not is_leap(as_of.year):
        birthday = (3, 1)
    return as_of.year - date_of_birth.year - ((as_of.month, as_of.day) < birthday)


def latest_birth_date_for_age(as_of: date, age: int) -> date:
    """The latest date of birth of someone aged at least ``age`` on ``as_of``.

    ``age_on(dob, as_of) >= age`` exactly when ``dob <= latest_birth_date_for_age(as_of, age)``:
    ``as_of`` minus ``age`` years, with 29 February becoming 28 February (someone born on
    29 February reaches the age on 1 March, after 28 February).
    """
    return minus_years(as_of, age)


def long_date(day: date) -> str:
    """A date as a practice manager writes it: ``30 September 2026``."""
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


def last_complete_month_end(today: date) -> date:
    """The last day of the last month that has ended by ``today``."""
    return today.replace(day=1) - ONE_DAY


def reference_date_problem(as_of: date, today: date) -> str | None:
    """Why ``as_of`` cannot be a round's reference date, or None when it can.

    Every round, whatever it asks, is dated at a month end no later than the last complete
    month: a day-by-day series of dates would let answers be differenced one day's deaths
    and registrations at a time, and a future or current month is not yet in the extract.
    """
    if not is_month_end(as_of):
        return f"the reference date must be a month end; {as_of.isoformat()} is not"
    if as_of > last_complete_month_end(today):
        return (
            f"the reference date {as_of.isoformat()} is not before the current month; "
            f"the latest allowed is {last_complete_month_end(today).isoformat()}"
        )
    return None
