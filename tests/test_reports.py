"""Practice reports, locality slides and the commissioners' summary: self-contained, valid,
naming only whom they may."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from test_comparisons_frame import PRACTICES, round_frame

from coordinator.comparisons import FRAME_COLUMNS, Comparison, build_comparison
from coordinator.console import print_comparison_table
from coordinator.reports import (
    render_practice_report,
    write_practice_reports,
    write_round_reports,
)
from coordinator.reports.palette import ORANGE
from fedpeer.policy import DisclosurePolicy

VOID = {"meta", "br", "img", "hr", "input", "link", "col", "wbr", "source"}
# SVG shapes may close themselves; HTML elements may not.
SELF_CLOSING_OK = {"rect", "line", "circle", "path", "stop", "polyline", "polygon"}
NAMES = [name for name, *_ in PRACTICES]


class StrictHTML(HTMLParser):
    """Checks that every element is closed, in order, and collects external references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.references: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "xlink:href", "action"} and value:
                self.references.append(value)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in SELF_CLOSING_OK and tag not in VOID:
            self.errors.append(f"<{tag}/> is not allowed in HTML")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return build_comparison(round_frame(), round_label="2026 Q3", as_of="30 September 2026")


@pytest.fixture(scope="module")
def report(comparison: Comparison) -> str:
    return render_practice_report(comparison, "P001")


def test_practice_report_is_valid_self_contained_html(report: str) -> None:
    assert report.startswith("<!DOCTYPE html>")
    parsed = parse(report)
    assert parsed.errors == []
    assert parsed.stack == []
    assert parsed.references == []  # nothing to fetch: no src, no href
    assert "http://" not in report and "https://" not in report
    assert not {"script", "link", "img", "iframe"} & set(parsed.tags)
    assert "<style>" in report


def test_practice_report_names_only_its_practice(report: str) -> None:
    assert "Riverside Surgery" in report
    others = [name for name in NAMES if name != "Riverside Surgery" and name in report]
    assert others == []
    assert not re.search(r"\bP0(0[2-9]|1\d|20)\b", report)  # nor other practices' ids


def test_practice_report_header_and_sections(report: str) -> None:
    text = " ".join(parse(report).text)
    for expected in (
        "2026 Q3",
        "30 September 2026",
        "Practices compared",
        "Summary",
        "Funnel plots",
        "Your most alike practices",
        "Who sees patients",
        "Your practice population",
        "No patient-level data left any practice",
        "rounded to the nearest 5",
    ):
        assert expected in text
    for title in ("Diabetes: HbA1c 58 mmol/mol or less", "Antibiotic items per 1,000 patients"):
        assert title in text
    assert report.count('class="chart pyramid"') == 1
    assert report.count('class="chart bars"') == 1  # skill mix


def test_one_funnel_per_proportion_and_rate_with_the_practice_highlighted(report: str) -> None:
    assert report.count('class="chart funnel"') == 9  # eight proportions and one rate
    assert report.count(f'r="7" fill="{ORANGE}"') == 9


def test_peers_are_anonymised(report: str, comparison: Comparison) -> None:
    for letter in "ABCDEFG":
        assert f"Peer {letter}" in report
    assert "not named, because the group has not agreed" in report


def test_peers_named_when_the_group_agreed() -> None:
    named = build_comparison(round_frame(), peers_named=True)
    html = render_practice_report(named, "P001")
    peer_names = [named.practices[pid].name for pid in named.peer_groups["P001"].peer_ids]
    assert all(name.replace("'", "&#39;") in html for name in peer_names)
    assert "Peer A" not in html


def test_suppressed_value_is_shown_not_dropped(comparison: Comparison) -> None:
    html = render_practice_report(comparison, "P020")
    assert "Suppressed by disclosure control: a count was too small to release." in html
    assert "No value" in html


def test_locality_below_minimum_is_withheld_in_report(comparison: Comparison) -> None:
    html = render_practice_report(comparison, "P018")  # West: three practices
    assert "West locality" in html
    assert "figures are withheld" in html and "fewer than the minimum of 5" in html
    north = render_practice_report(comparison, "P001")  # withheld with West
    assert "figures are withheld" in north and "cannot be worked out" in north
    # What the policy did says the same, per reason, and nothing untrue.
    assert "withheld (with a smaller withheld locality, which it would give away)" in north
    east = render_practice_report(comparison, "P011")
    assert "1 of 2" in east or "2 of 2" in east


def test_rendering_is_deterministic(comparison: Comparison, report: str) -> None:
    assert render_practice_report(comparison, "P001") == report


def test_names_are_escaped() -> None:
    frame = round_frame()
    frame.loc[frame["practice_id"] == "P001", "practice_name"] = "<script>x</script> & Co"
    html = render_practice_report(build_comparison(frame), "P001")
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; Co" in html


def test_unknown_practice_is_refused(comparison: Comparison) -> None:
    with pytest.raises(KeyError):
        render_practice_report(comparison, "nope")


def test_write_practice_reports(tmp_path: Path, comparison: Comparison) -> None:
    paths = write_practice_reports(comparison, tmp_path / "out")
    assert len(paths) == 20
    assert paths[0].name == "practice-P001.html"
    assert all(p.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") for p in paths)


def test_reports_for_more_than_one_practice_name_none_by_default(
    tmp_path: Path, comparison: Comparison
) -> None:
    """The commissioners' summary and every locality's slides, no locality having agreed to
    be named (naming one is in test_reports_command.py)."""
    written = write_round_reports(comparison, tmp_path, pdf=False)
    assert written.pdfs == [] and written.commissioners is not None
    assert len(written.localities) == len({p.locality for p in comparison.practices.values()})
    for path in (written.commissioners, *written.localities):
        html = path.read_text(encoding="utf-8")
        parsed = parse(html)
        assert parsed.errors == [] and parsed.references == [], path.name
        assert not [name for name in NAMES if name.replace("'", "&#39;") in html], path.name
        assert not re.search(r"\bP0\d\d\b", html), path.name  # nor practice ids
        assert f'r="7" fill="{ORANGE}"' not in html, path.name  # no practice highlighted
    for path in written.localities:
        assert "Practice A" in path.read_text(encoding="utf-8"), path.name
    assert "Withheld" in written.commissioners.read_text(encoding="utf-8")  # the West locality


def test_console_table(comparison: Comparison) -> None:
    console = Console(record=True, width=160)
    print_comparison_table(comparison, console)
    text = console.export_text()
    assert "Flu vaccination, aged 65 and over" in text
    flu = comparison.indicators["flu_vacc_65"]
    line = next(line for line in text.splitlines() if "Flu vaccination" in line)
    assert line.rstrip(" │").endswith(str(flu.count_outside()))
    assert "77.9%" in line or flu.spec.format(flu.overall.value) in line
    assert not [name for name in NAMES if name in text]


def test_console_table_withholds_small_rounds() -> None:
    frame = round_frame()
    small = build_comparison(frame[frame["practice_id"].isin(["P001", "P002", "P003"])])
    console = Console(record=True, width=160)
    print_comparison_table(small, console)
    assert "withheld" in console.export_text()


def test_reference_date_reads_as_words(comparison: Comparison) -> None:
    html = render_practice_report(comparison, "P002", round_label="Q3", as_of=date(2026, 9, 30))
    assert "30 September 2026" in html and ">Q3<" in html


def test_practice_without_a_profile_is_told_why_it_has_no_peers() -> None:
    frame = round_frame()
    frame = frame[~frame["indicator"].str.startswith("profile.") | (frame["practice_id"] != "P005")]
    html = render_practice_report(build_comparison(frame), "P005")
    assert "profile (age, sex and deprivation counts, list size) was incomplete" in html
    assert "Peer A" not in html


def test_an_empty_round_writes_the_commissioners_summary_alone(tmp_path: Path) -> None:
    empty = build_comparison(pd.DataFrame(columns=list(FRAME_COLUMNS)))
    written = write_round_reports(empty, tmp_path, pdf=False)
    assert written.html == [written.commissioners]  # no practice, so no practice report or slides
    assert parse(written.commissioners.read_text(encoding="utf-8")).errors == []


def test_footer_quotes_the_rounds_policy() -> None:
    policy = DisclosurePolicy(threshold=10, rounding_base=10, group_minimum=6)
    c = build_comparison(round_frame(), policy=policy)
    assert c.group_minimum == 6
    html = render_practice_report(c, "P001")
    assert "every count from 1 to 10 was suppressed" in html
    assert "rounded to the nearest 10" in html
    assert "at least 6 practices contributed" in html
