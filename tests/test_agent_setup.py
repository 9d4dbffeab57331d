"""``fedpeer-agent init`` and the agent.toml template: one list of keys for parser, file, docs."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from agent.policy_file import (
    SETTINGS,
    TABLES,
    PracticeSettings,
    agent_toml_template,
    load_settings,
    parse_settings,
    settings_reference,
)
from fedpeer.errors import PolicyError
from fedpeer.policy import DisclosurePolicy

DOCS = Path(__file__).resolve().parent.parent / "docs" / "agent.md"
# "# key = value" lines of the template: the settings, commented out.
SETTING_LINE = re.compile(r"^# (\w+) = (.+)$")


def _template_keys(text: str) -> dict[str, set[str]]:
    """The commented-out keys of a template, by the table they appear under."""
    keys: dict[str, set[str]] = {}
    table = None
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            table = m.group(1)
            keys[table] = set()
        elif (m := SETTING_LINE.match(line)) and table is not None:
            keys[table].add(m.group(1))
    return keys


def _uncommented(text: str) -> str:
    return "\n".join(line[2:] if SETTING_LINE.match(line) else line for line in text.splitlines())


def test_the_template_parses_to_the_defaults() -> None:
    assert parse_settings(tomllib.loads(agent_toml_template())) == PracticeSettings()


def test_every_default_shown_is_the_parsers_default() -> None:
    # Uncomment every setting: the values shown must be exactly the defaults (the one
    # key with no default shows an example, and only it may change the settings).
    data = tomllib.loads(_uncommented(agent_toml_template()))
    assert data["privacy"] == {"budget_rho": 1.0}
    del data["privacy"]
    assert parse_settings(data) == PracticeSettings()


def test_every_key_the_parser_accepts_is_in_the_template() -> None:
    # [disclosure] accepts exactly the policy's fields (fedpeer.policy.policy_from_table).
    accepted = {
        "disclosure": {f.name for f in fields(DisclosurePolicy)},
        "questions": {"per_month"},
        "privacy": {"budget_rho"},
        "studies": {"mode", "owners"},
    }
    assert _template_keys(agent_toml_template()) == accepted
    assert {(s.table, s.key) for s in SETTINGS} == {(t, k) for t in accepted for k in accepted[t]}
    assert set(TABLES) == set(accepted)


@pytest.mark.parametrize("table", ["disclosure", "questions", "privacy", "studies"])
def test_a_key_not_in_the_template_is_refused(table: str) -> None:
    with pytest.raises(PolicyError, match=f"{table}.colour"):
        parse_settings({table: {"colour": 3}})


def test_every_setting_is_explained_just_above_it() -> None:
    explained: dict[str, str] = {}
    table, words = "", []
    for line in agent_toml_template().splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            table, words = m.group(1), []
        elif m := SETTING_LINE.match(line):
            explained[f"{table}.{m.group(1)}"] = " ".join(words)
            words = []
        elif table and line.startswith("# "):
            words.append(line[2:])
    assert explained == {s.name: s.meaning for s in SETTINGS}


def test_the_docs_reference_is_the_generated_one() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    assert settings_reference() in docs, (
        "docs/agent.md's agent.toml reference differs from agent.policy_file.SETTINGS: "
        "paste agent.policy_file.settings_reference() into it"
    )
    documented = set(re.findall(r"^\| `(\w+)\.(\w+)` \|", docs, flags=re.MULTILINE))
    assert documented == {(s.table, s.key) for s in SETTINGS}


def test_a_written_template_loads_as_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(agent_toml_template(), encoding="utf-8")
    assert load_settings(tmp_path) == PracticeSettings()
