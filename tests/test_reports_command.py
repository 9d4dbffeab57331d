"""`fedpeer-coordinator report` over a real store after real rounds: HTML, PDF, screenshots.

Three rounds run over mutual TLS (the HbA1c definition changes in the third), then the
command runs in a subprocess as an operator would run it. The PDFs are read back with
pypdf; the reports are screenshotted in headless Chromium, and the screenshots kept in
``test-artefacts/screenshots/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _report_rounds import MONTHS, PRACTICES, run_rounds
from pypdf import PdfReader

from coordinator.ca import CoordinatorHome
from coordinator.comparison_store import comparison_for, trends
from coordinator.reports.pdf import printer
from coordinator.reports.render import report_filename, slides_filename
from coordinator.store import Store

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-artefacts" / "screenshots"
NORTH = [name for _, name, locality in PRACTICES if locality == "North"]
SOUTH = [name for _, name, locality in PRACTICES if locality == "South"]
# PDF path operators: move, line, curve, rectangle; a chart is hundreds of them.
PATH_OPERATOR = re.compile(rb"\s(?:m|l|c|re)\n")

pytestmark = pytest.mark.timeout(600)


def report(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``fedpeer-coordinator report`` in a subprocess, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDPEER_")}
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "report", *args, "--home", str(home)],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A coordinator home whose store holds three closed rounds and one open.

    The network suppresses counts up to 10 (the default is 7): the reports must say 10.
    """
    tmp = tmp_path_factory.mktemp("rounds")
    home = tmp / "coord"
    return home, asyncio.run(run_rounds(home, tmp, leave_open=True, threshold=10))


@pytest.fixture(scope="module")
def written(rounds: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The third round's reports, North agreeing that its practices are named."""
    home, ids = rounds
    out = tmp_path_factory.mktemp("reports") / "out"
    done = report(home, ids[2], "--out", str(out), "--named-localities", "North")
    assert done.returncode == 0, done.stderr
    assert f"Round {ids[2]} as of 2026-09-30: 7 practices, 2 indicators" in done.stdout
    assert "Wrote 7 practice reports, 2 locality slide packs" in done.stdout
    assert "Printed 10 PDFs" in done.stdout
    return out


def text_of(pdf: Path) -> str:
    """All the text of a PDF, whitespace collapsed."""
    return " ".join(" ".join(p.extract_text() for p in PdfReader(pdf).pages).split())


def drawing_operators(pdf: Path) -> int:
    """How many path operators the PDF's pages draw (SVG charts print as vector paths)."""
    return sum(
        len(PATH_OPERATOR.findall(p.get_contents().get_data())) for p in PdfReader(pdf).pages
    )


def test_every_report_is_written_as_html_and_pdf(written: Path) -> None:
    practices = {report_filename(pid) for pid, *_ in PRACTICES}
    names = {p.name for p in (written / "practices").iterdir()}
    assert names == practices | {n.replace(".html", ".pdf") for n in practices}
    slides = {slides_filename("North"), slides_filename("South")}
    assert {p.name for p in (written / "localities").iterdir()} == slides | {
        n.replace(".html", ".pdf") for n in slides
    }
    assert (written / "commissioners.pdf").is_file()
    # Every file holds values: owner-only, the PDFs Chromium printed included.
    modes = {p.stat().st_mode & 0o777 for p in written.rglob("*") if p.is_file()}
    assert modes == {0o600}


def test_practice_pdf_has_pages_text_and_charts(written: Path) -> None:
    pdf = written / "practices" / report_filename("A81002")
    reader = PdfReader(pdf.with_suffix(".pdf"))
    assert 3 <= len(reader.pages) <= 12
    text = text_of(pdf.with_suffix(".pdf"))
    for expected in (
        "Hill Top Medical Centre",
        "Trends",
        "3 rounds with this definition, 31 July 2026 to 30 September 2026",
        "The first round with this definition: the trend starts here.",
        "What this round's disclosure policy did",
        "Data-quality notes",
        "every count from 1 to 10 was suppressed",  # the round's policy, not the default
    ):
        assert expected in text, expected
    assert drawing_operators(pdf.with_suffix(".pdf")) > 300  # funnels, strips, trends


def test_trends_join_only_rounds_with_the_same_definition(
    rounds: tuple[Path, list[str]], written: Path
) -> None:
    home, ids = rounds
    html = (written / "practices" / report_filename("A81001")).read_text()
    # Each trend chart has one x-axis label per round it joins.
    charts = re.findall(r'<svg[^>]*class="chart trend".*?</svg>', html, flags=re.S)
    months = [re.findall(r">(\w{3} 2026)</text>", svg) for svg in charts]
    assert sorted(months) == sorted([["Sep 2026"], [f"{m:%b %Y}" for m in MONTHS]])
    assert "the definition changed after the round of 31 August 2026" in html
    # The stored series says the same as the report.
    store = Store(CoordinatorHome(home).database)
    try:
        series = trends(store, ids[2])
        _, comparison = comparison_for(store, ids[2])
    finally:
        store.close()
    assert [len(series[i].rounds) for i in comparison.indicators] == [1, 3]


def test_slides_name_or_letter_practices_as_each_locality_agreed(written: Path) -> None:
    north = written / "localities" / slides_filename("North")
    south = written / "localities" / slides_filename("South")
    north_text, south_text = text_of(north.with_suffix(".pdf")), text_of(south.with_suffix(".pdf"))
    assert all(name in north_text for name in NORTH)
    assert "Practice A" not in north_text
    assert "Practice A" in south_text and "Practice B" in south_text
    assert not any(name in south_text for name in SOUTH + NORTH)
    assert not any(name in south.read_text() for name in SOUTH + NORTH)
    # A slide per indicator, a title and an about slide, each a 16:9 page, charts drawn.
    reader = PdfReader(north.with_suffix(".pdf"))
    assert len(reader.pages) == 4
    assert {(float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages} == {
        (960.0, 540.0)
    }
    assert drawing_operators(north.with_suffix(".pdf")) > 40


def test_commissioners_summary_shows_no_practice_level_value(
    rounds: tuple[Path, list[str]], written: Path
) -> None:
    home, ids = rounds
    store = Store(CoordinatorHome(home).database)
    try:
        _, comparison = comparison_for(store, ids[2])
    finally:
        store.close()
    html = (written / "commissioners.html").read_text()
    pdf_text = text_of(written / "commissioners.pdf")
    group_values = {
        ic.spec.format(g.value)
        for ic in comparison.indicators.values()
        for g in (ic.overall, *ic.localities)
        if g.published
    }
    for ic in comparison.indicators.values():
        for pid, v in ic.practices.items():
            shown = ic.spec.format(v.value)
            assert shown != "—"
            if shown not in group_values:
                assert shown not in html and shown not in pdf_text, (ic.spec.id, pid)
            assert f"{v.numerator:,.0f} of {v.denominator:,.0f}" not in html
    assert not any(name in html for _, name, _ in PRACTICES)
    assert 'class="chart strip"' not in html and 'class="chart funnel"' not in html
    assert ic.spec.format(comparison.indicators["dna_rate"].overall.value) in pdf_text


def test_reports_screenshotted_in_headless_chromium(written: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "practice-A81001.png": written / "practices" / report_filename("A81001"),
        "slides-North.png": written / "localities" / slides_filename("North"),
        "slides-South.png": written / "localities" / slides_filename("South"),
        "commissioners.png": written / "commissioners.html",
    }
    with printer() as chrome:
        for name, html in pages.items():
            png = chrome.screenshot(html, SCREENSHOTS / name)
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            assert width == 1280 and height > 700
            assert len(data) > 40_000  # text and charts, not a blank page


def test_errors_are_one_line(rounds: tuple[Path, list[str]], tmp_path: Path) -> None:
    home, ids = rounds
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder\n")
    cases = [
        (("nope", "--out", str(tmp_path / "o1")), "UnknownRound: there is no round nope"),
        (
            (ids[3], "--out", str(tmp_path / "o2")),
            f"RoundError: round {ids[3]} is open: close it first",
        ),
        ((ids[2], "--out", str(a_file)), "is a file: give a folder"),
        (
            (ids[2], "--out", str(a_file / "inside")),
            f"ReportError: cannot write reports into {a_file / 'inside'}: Not a directory",
        ),
    ]
    for args, message in cases:
        done = report(home, *args)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_without_chromium_the_html_is_still_written(
    rounds: tuple[Path, list[str]], tmp_path: Path
) -> None:
    home, ids = rounds
    out = tmp_path / "out"
    done = report(home, ids[0], "--out", str(out), "--chromium", str(tmp_path / "no-chromium"))
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("No PDFs"))
    assert "apt-get install chromium" in line and "the HTML reports are written" in line
    assert len(list((out / "practices").glob("*.html"))) == 7
    assert not list(out.rglob("*.pdf"))
