"""``fedpeer-agent doctor``: is this agent ready? One plain line per check, and what to fix.

The checks, in order, each ``ok``, ``warning`` or ``problem``:

- **configuration**: ``agent.toml`` parses (the parser's own message otherwise);
- **identity**: the home holds an enrolled agent, its key and certificate belong together
  and the certificate is from the CA pinned at enrolment;
- **certificate**: expiry (a problem once expired, a warning under 30 days);
- **extract** (with ``--extract``): it opens and validates as of the last complete month
  end; its list size (the profile's own definition) and row counts, never a value;
- **coordinator**: a real mutual-TLS call, outbound only (``ListOpenRounds``, which the
  coordinator answers only for an enrolled practice);
- **clock**: not behind the coordinator. gRPC carries no server time, and nothing is
  added to the protocol for this, so the clock is compared with times the coordinator
  has certified: the certificates' start (a clock before it breaks TLS) and the signed
  creation time of the newest open round. These are lower bounds only: a clock running
  fast cannot be seen from here;
- **disk**: room for the ledger on the home's filesystem;
- **files**: the key, ledger, outbox, audit log and study book readable by their owner only.

The doctor writes nothing and reads no patient value: an extract error is an
``ExtractError``, which names a table, line and column, never the value there; any other
error from a data source is reported by its kind only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shlex
import shutil
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import grpc
from cryptography.exceptions import InvalidSignature

from agent.audit import AUDIT_FILE
from agent.identity_store import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    OUTBOX_FILE,
    SETTINGS_FILE,
    AgentHome,
    AgentIdentity,
)
from agent.ledger import LEDGER_FILE
from agent.policy_file import AGENT_TOML, TABLES, PracticeSettings, load_settings
from agent.studies import STUDIES_FILE
from fedpeer import wire
from fedpeer.channel import secure_channel, translate
from fedpeer.dates import last_complete_month_end, long_date
from fedpeer.definitions import find_standard
from fedpeer.errors import ExtractError, FedpeerError
from fedpeer.identity import cert_from_pem, key_from_pem
from fedpeer.measures import Count
from fedpeer.policy import Noise, Rounding
from fedpeer.signing import verify_round
from fedpeer.v1 import agent_pb2, agent_pb2_grpc

CERT_WARNING_DAYS = 30
DISK_PROBLEM_BYTES = 100 * 1024 * 1024
DISK_WARNING_BYTES = 1024 * 1024 * 1024
# A round created a moment ago by a coordinator whose clock is a little ahead is no news.
CLOCK_TOLERANCE = dt.timedelta(minutes=2)
DEFAULT_TIMEOUT = 5.0
# Files that hold what the practice released, its secrets, or its study keys.
PRIVATE_FILES = (KEY_FILE, LEDGER_FILE, OUTBOX_FILE, AUDIT_FILE, STUDIES_FILE)
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
LIST_SIZE = "profile.list_size"


class DiskUsage(Protocol):
    """What ``shutil.disk_usage`` returns, as far as the doctor reads it."""

    @property
    def free(self) -> int: ...


class Status(StrEnum):
    """How one check came out."""

    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: one line a person can act on."""

    check: str
    status: Status
    message: str

    def line(self) -> str:
        """``status  check: message``, statuses aligned."""
        return f"{self.status.value:<7} {self.check}: {self.message}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{int(seconds)} seconds"


# -- configuration -----------------------------------------------------------------------


def _describe(settings: PracticeSettings) -> str:
    p = settings.policy
    rounding = (
        "midpoint-6 rounding"
        if p.rounding == Rounding.MIDPOINT6
        else f"rounded to the nearest {p.rounding_base}"
    )
    parts = [
        f"counts 1 to {p.threshold} suppressed, others {rounding}",
        "every release waits for approval" if p.manual_approval else "no manual approval",
    ]
    if p.noise != Noise.NONE:
        parts.append(f"{p.noise.value} noise of scale {p.noise_scale:g}")
    parts.append(f"{settings.questions_per_month} questions a month")
    parts.append(f"studies: {settings.studies.mode.value}")
    return "; ".join(parts)


def check_configuration(home: Path) -> Finding:
    """agent.toml parses to settings the agent accepts."""
    path = home / AGENT_TOML
    if not path.exists():
        return Finding(
            "configuration",
            Status.OK,
            f"no {AGENT_TOML}, so the defaults apply "
            f"(`fedpeer-agent init --home {shlex.quote(str(home))}` writes one to edit)",
        )
    try:
        settings = load_settings(home)
        tables = set(tomllib.loads(path.read_text(encoding="utf-8")))
    except FedpeerError as exc:
        fresh = f"`fedpeer-agent init --home {shlex.quote(str(home))} --force` writes a fresh one"
        return Finding(
            "configuration", Status.PROBLEM, f"{_one_line(exc)}; correct the file ({fresh})"
        )
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        return Finding("configuration", Status.PROBLEM, f"cannot read {path}: {reason}")
    ignored = sorted(tables - set(TABLES))
    if ignored:
        return Finding(
            "configuration",
            Status.WARNING,
            f"{path} has a table [{ignored[0]}] the agent does not read (it reads "
            f"{', '.join(f'[{t}]' for t in TABLES)}): a misspelling? {_describe(settings)}",
        )
    return Finding("configuration", Status.OK, f"{path} is valid: {_describe(settings)}")


# -- identity ----------------------------------------------------------------------------


def _enrol_hint(home: Path) -> str:
    return (
        "enrol it with `fedpeer-agent enrol --coordinator HOST:PORT --enrol-port PORT "
        f"--token TOKEN --home {shlex.quote(str(home))}` (the coordinator gives the token)"
    )


def check_identity(home: Path, now: dt.datetime) -> tuple[list[Finding], AgentIdentity | None]:
    """The enrolled identity, and whether its certificate is in date; (findings, identity)."""
    agent_home = AgentHome(home)
    names = (KEY_FILE, CERT_FILE, CA_FILE, SETTINGS_FILE)
    missing = [n for n in names if not (home / n).exists()]
    if len(missing) == len(names):
        message = f"{home} holds no enrolled agent: {_enrol_hint(home)}"
        return [Finding("identity", Status.PROBLEM, message)], None
    if missing:
        message = (
            f"{home} holds part of an agent ({', '.join(missing)} missing): restore the "
            "missing files from a backup, or enrol again in a new folder"
        )
        return [Finding("identity", Status.PROBLEM, message)], None
    try:
        identity = agent_home.load()
        cert, ca = cert_from_pem(identity.cert_pem), identity.ca_cert
        key = key_from_pem(identity.key_pem)
    except (FedpeerError, ValueError, KeyError, OSError) as exc:
        reason = _one_line(exc) if isinstance(exc, FedpeerError) else type(exc).__name__
        message = f"the identity files in {home} cannot be read ({reason}): enrol again"
        return [Finding("identity", Status.PROBLEM, message)], None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        message = f"{CERT_FILE} was not issued by the CA in {CA_FILE}: {_enrol_hint(home)}"
        return [Finding("identity", Status.PROBLEM, message)], None
    if cert.public_key() != key.public_key():
        message = f"{KEY_FILE} is not the key of {CERT_FILE}: {_enrol_hint(home)}"
        return [Finding("identity", Status.PROBLEM, message)], None
    found = [
        Finding(
            "identity",
            Status.OK,
            f"enrolled as practice {identity.practice_id}, "
            f"with the coordinator at {identity.coordinator}",
        ),
        _certificate_expiry(cert.not_valid_after_utc, ca.not_valid_after_utc, now),
    ]
    return found, identity


def _certificate_expiry(agent_end: dt.datetime, ca_end: dt.datetime, now: dt.datetime) -> Finding:
    whose, end = "the agent's certificate", agent_end
    if ca_end < agent_end:
        whose, end = "the coordinator's CA certificate", ca_end
    renew = "ask the coordinator for a new enrolment token and enrol again"
    if end <= now:
        return Finding(
            "certificate",
            Status.PROBLEM,
            f"{whose} expired on {long_date(end.date())}: the coordinator refuses it; {renew}",
        )
    left = end - now
    if left < dt.timedelta(days=CERT_WARNING_DAYS):
        return Finding(
            "certificate",
            Status.WARNING,
            f"{whose} expires on {long_date(end.date())}, in {_span(left)}: {renew} before then",
        )
    return Finding(
        "certificate",
        Status.OK,
        f"{whose} is valid until {long_date(end.date())} ({left.days} days)",
    )


# -- extract -----------------------------------------------------------------------------


def shown_location(location: str) -> str:
    """The extract's location as it may be printed: a database URL without its password."""
    if "://" not in location:
        return location
    import sqlalchemy as sa

    try:
        return sa.make_url(location).render_as_string(hide_password=True)
    except Exception:
        return "the database URL"


def check_extract(location: str, today: dt.date) -> Finding:
    """The extract opens and validates as of the last complete month end; row counts only."""
    from agent.engine import evaluate  # the extract's readers load only when one is checked
    from agent.extract import open_extract

    as_of = last_complete_month_end(today)
    where = shown_location(location)
    try:
        with open_extract(location, as_of) as extract, extract.connect() as connection:
            quality, source = extract.quality, extract.source
            # The list size exactly as a round counts it: the profile's own definition.
            (result,) = evaluate([find_standard(LIST_SIZE)], connection, as_of)
    except ExtractError as exc:
        # ExtractError names table, line and column, never a value.
        return Finding(
            "extract",
            Status.PROBLEM,
            f"{where} cannot be used as of {as_of.isoformat()}: {_one_line(exc)}",
        )
    except Exception as exc:
        # A driver's message may quote a value from the data: only its kind is shown.
        return Finding(
            "extract",
            Status.PROBLEM,
            f"{where} cannot be read ({type(exc).__name__}): check the location, and that "
            "this user may read it",
        )
    rows = ", ".join(
        f"{table} {getattr(quality, table + '_rows'):,}"
        for table in ("patients", "clinical_events", "medications", "appointments")
    )
    findings = quality.findings()
    note = (
        f"; {len(findings)} kinds of data-quality finding, none fatal "
        f"(`fedpeer-agent compute --as-of {as_of.isoformat()}` describes them)"
        if findings
        else "; no data-quality findings"
    )
    size = result.measure.value if isinstance(result.measure, Count) else None
    listed = f"list size {size:,}; " if size is not None else ""
    return Finding(
        "extract",
        Status.OK,
        f"{where} ({source}) opens and validates as of {as_of.isoformat()}: {listed}"
        f"rows {rows}{note}",
    )


# -- coordinator and clock ---------------------------------------------------------------


@dataclass(frozen=True)
class CoordinatorProbe:
    """What one mutual-TLS visit to the coordinator found."""

    finding: Finding
    reached: bool = False
    newest_round: str | None = None
    newest_round_created: dt.datetime | None = None


async def probe_coordinator(identity: AgentIdentity, timeout: float) -> CoordinatorProbe:
    """Call the coordinator over mutual TLS with the agent's identity, outbound only."""
    i = identity
    address = i.coordinator
    started = time.monotonic()
    # Only the agent's own service is called: the health-check stubs belong to the
    # coordinator's install, not the agent's.
    step = "agent"
    try:
        async with secure_channel(address, i.ca_pem, i.key_pem, i.cert_pem, i.server_name) as ch:
            stub = agent_pb2_grpc.AgentStub(ch)
            listed = await stub.ListOpenRounds(agent_pb2.ListOpenRoundsRequest(), timeout=timeout)
            elapsed = time.monotonic() - started
            newest, created = None, None
            if listed.rounds:
                newest = listed.rounds[-1].round_id  # the coordinator lists oldest first
                message = await stub.GetRound(
                    agent_pb2.GetRoundRequest(round_id=newest), timeout=timeout
                )
                round_ = wire.round_from_proto(message)
                verify_round(i.ca_cert, round_)
                created = dt.datetime.fromisoformat(round_.created_at)
    except grpc.aio.AioRpcError as exc:
        refused = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
        if step == "agent" and exc.code() in refused:
            message = (
                f"reached {address} over mutual TLS, but it refused this agent: "
                f"{_one_line(exc.details() or exc.code().name)}; ask the coordinator whether "
                f"practice {i.practice_id} is still enrolled, and enrol again if not"
            )
            return CoordinatorProbe(Finding("coordinator", Status.PROBLEM, message), reached=True)
        error = translate(exc, address, probe=True)
        return CoordinatorProbe(Finding("coordinator", Status.PROBLEM, _one_line(error)))
    except (FedpeerError, ValueError) as exc:
        message = f"reached {address}, but its round could not be verified ({_one_line(exc)})"
        return CoordinatorProbe(Finding("coordinator", Status.PROBLEM, message), reached=True)
    rounds = len(listed.rounds)
    message = (
        f"reached {address} over mutual TLS in {elapsed * 1000:.0f} ms; it accepts this agent "
        f"as practice {i.practice_id}; {rounds} round{'s' if rounds != 1 else ''} open"
    )
    return CoordinatorProbe(Finding("coordinator", Status.OK, message), True, newest, created)


def check_clock(identity: AgentIdentity, probe: CoordinatorProbe, now: dt.datetime) -> Finding:
    """The local clock is not behind the times the coordinator has certified.

    gRPC gives no server time, so these are lower bounds only: the agent certificate's
    start, the CA certificate's start, and the signed creation time of the newest open
    round. A clock running fast cannot be seen from here.
    """
    cert = cert_from_pem(identity.cert_pem)
    certified = [
        ("the start of the agent's certificate", cert.not_valid_before_utc),
        ("the start of the coordinator's CA certificate", identity.ca_cert.not_valid_before_utc),
    ]
    here = f"this machine's clock ({_utc(now)})"
    fix = "set it from a time server (NTP)"
    for what, start in certified:
        if now < start:
            return Finding(
                "clock",
                Status.PROBLEM,
                f"{here} is before {what} ({_utc(start)}), so at least {_span(start - now)} "
                f"behind the coordinator's: {fix}; until then TLS and round dates fail",
            )
    compared = "the agent certificate's start, the CA certificate's start"
    created = probe.newest_round_created
    if created is not None:
        if now < created - CLOCK_TOLERANCE:
            return Finding(
                "clock",
                Status.WARNING,
                f"{here} is at least {_span(created - now)} behind the coordinator's: it "
                f"signed round {probe.newest_round} at {_utc(created)}; {fix}: the agent "
                "decides from its own clock which months are complete",
            )
        compared += f" and round {probe.newest_round}'s signed creation ({_utc(created)})"
    elif probe.reached:
        compared += " (no round is open to compare with)"
    else:
        compared += " (the coordinator was not reached to compare with a round)"
    return Finding(
        "clock",
        Status.OK,
        f"{here} is not before {compared}; a clock running fast cannot be seen from here",
    )


# -- disk and files ----------------------------------------------------------------------


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("bytes", "KB", "MB") else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_disk(home: Path, usage: Callable[[Path], DiskUsage] = shutil.disk_usage) -> Finding:
    """Free space on the home's filesystem, for the ledger, outbox and audit log."""
    free = usage(home).free
    where = f"{_size(free)} free on the filesystem of {home}"
    if free < DISK_PROBLEM_BYTES:
        return Finding(
            "disk",
            Status.PROBLEM,
            f"only {where}: the ledger, outbox and audit log need room; free at least "
            f"{_size(DISK_WARNING_BYTES)}",
        )
    if free < DISK_WARNING_BYTES:
        return Finding(
            "disk",
            Status.WARNING,
            f"only {where}: the ledger grows with every round; free some space soon",
        )
    return Finding("disk", Status.OK, where)


def check_files(home: Path) -> Finding:
    """The private files are readable, and the home writable, by their owner only."""
    if os.name == "nt":  # pragma: no cover - POSIX modes mean nothing on Windows
        return Finding("files", Status.OK, "file permissions are not checked on Windows")
    present = [
        home / (name + side)
        for name in PRIVATE_FILES
        for side in ("", *SQLITE_SIDE_FILES)
        if (home / (name + side)).exists()
    ]
    open_to_others = [p for p in present if p.stat().st_mode & 0o077]
    writable_home = home.stat().st_mode & 0o022
    if not open_to_others and not writable_home:
        kept = ", ".join(p.name for p in present) or "none yet"
        return Finding("files", Status.OK, f"private files readable by their owner only ({kept})")
    fixes, said = [], []
    if open_to_others:
        names = ", ".join(p.name for p in open_to_others)
        said.append(f"{names} can be read by other users of this machine")
        fixes.append("chmod 600 " + " ".join(shlex.quote(str(p)) for p in open_to_others))
    if writable_home:
        said.append(f"other users can write to {home}")
        fixes.append(f"chmod go-w {shlex.quote(str(home))}")
    return Finding("files", Status.WARNING, f"{'; '.join(said)}: run `{' && '.join(fixes)}`")


# -- all of it ---------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def diagnose(
    home: Path,
    extract: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    clock: Callable[[], dt.datetime] = _now,
    disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
) -> list[Finding]:
    """Every check, in order; a missing home is one finding and nothing else is looked at."""
    if not home.is_dir():
        what = "is not a folder" if home.exists() else "does not exist"
        return [
            Finding(
                "home",
                Status.PROBLEM,
                f"{home} {what}: give the agent's home folder, or create it with "
                f"`fedpeer-agent init --home {shlex.quote(str(home))}` and enrol",
            )
        ]
    findings = [check_configuration(home)]
    identity_findings, identity = check_identity(home, clock())
    findings.extend(identity_findings)
    if extract is not None:
        findings.append(await asyncio.to_thread(check_extract, extract, clock().date()))
    if identity is not None:
        probe = await probe_coordinator(identity, timeout)
        findings.append(probe.finding)
        findings.append(check_clock(identity, probe, clock()))
    findings.append(check_disk(home, disk_usage))
    findings.append(check_files(home))
    return findings


def summary(findings: list[Finding]) -> str:
    """One closing line: how many problems and warnings."""
    problems = sum(f.status == Status.PROBLEM for f in findings)
    warnings = sum(f.status == Status.WARNING for f in findings)
    if not problems and not warnings:
        return f"All {len(findings)} checks ok."
    counted = [
        f"{n} {word}{'s' if n != 1 else ''}"
        for n, word in ((problems, "problem"), (warnings, "warning"))
        if n
    ]
    tail = ": fix the problems first" if problems else ""
    return f"{' and '.join(counted)} in {len(findings)} checks{tail}."
