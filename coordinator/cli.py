"""``fedpeer-coordinator``: set up the CA, serve, enrol practices, run rounds.

Every command but ``init`` and ``serve`` talks to the running coordinator over mutual
TLS with the admin certificate in ``--home``, so it works the same from the coordinator
machine or an administrator's laptop holding a copy of the admin key.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

import pandas as pd
import typer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from rich.table import Column, Table

from coordinator import cli_keys, cli_rounds
from coordinator.admin_client import AdminClient, recorded_address
from coordinator.backup import backup, restore
from coordinator.ca import (
    CA_PASSPHRASE_ENV,
    CaKeyState,
    CoordinatorHome,
    ca_passphrase,
    init_home,
)
from coordinator.cli_report import report_command
from coordinator.cli_stats import stats_app
from coordinator.config import KEYS as CONFIG_KEYS
from coordinator.config import load_config
from coordinator.console import print_comparison_table
from coordinator.server import RunningCoordinator, serve
from coordinator.store import Store
from coordinator.study_client import export, results_frame
from fedpeer.cli_support import (
    add_common_options,
    as_of_option,
    existing_home,
    file_to_write,
    folder_to_write,
    log_events,
    make_console,
    run_app,
)
from fedpeer.collection import DefinitionDocument
from fedpeer.definitions import load_definition, serialize
from fedpeer.errors import IdentityError
from fedpeer.identity import CertificateAuthority, cert_to_pem, key_to_pem
from fedpeer.private_files import create_private, private_dir
from fedpeer.studies import Study
from fedpeer.v1 import admin_pb2

app = typer.Typer(
    name="fedpeer-coordinator",
    help="Enrol practices, run collection rounds, and compare what they release.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
add_common_options(app)
practice_app = typer.Typer(help="Invite and list practices.", no_args_is_help=True)
round_app = typer.Typer(
    help="Start, follow, close, publish, cancel and schedule collection rounds.",
    no_args_is_help=True,
)
study_app = typer.Typer(
    help="Studies: an analyst's questions, answered only as sums over practices.",
    no_args_is_help=True,
)
analyst_app = typer.Typer(help="Certificates for analysts who own studies.", no_args_is_help=True)
app.add_typer(practice_app, name="practice")
app.add_typer(round_app, name="round")
app.add_typer(study_app, name="study")
app.add_typer(analyst_app, name="analyst")
app.command("report")(report_command)
app.add_typer(stats_app, name="stats")
console = make_console()

T = TypeVar("T")
HOME = typer.Option(
    Path("coordinator-home"),
    "--home",
    envvar="FEDPEER_COORDINATOR_HOME",
    help="The coordinator's home directory.",
)
CONFIG = typer.Option(
    None,
    "--config",
    envvar="FEDPEER_COORDINATOR_CONFIG",
    help="A TOML settings file (see docs/operations.md).",
)
COORDINATOR = typer.Option(
    None, "--coordinator", help="HOST:PORT of the coordinator (default: as `serve` recorded)."
)


def _given(ctx: typer.Context, **renamed: str) -> dict[str, object]:
    """The options typed on the command line (not defaults), by configuration key."""
    given = {}
    for name, value in ctx.params.items():
        key = renamed.get(name, name)
        source = ctx.get_parameter_source(name)
        if key in CONFIG_KEYS and source is not None and source.name == "COMMANDLINE":
            given[key] = value
    return given


def _home(home: Path) -> CoordinatorHome:
    """The coordinator home at ``home``; every command but ``init`` needs one, none makes one."""
    return CoordinatorHome(existing_home(home, "coordinator", "fedpeer-coordinator init"))


def _admin_call(
    home: Path, coordinator: str | None, call: Callable[[AdminClient], Awaitable[T]]
) -> T:
    coord_home = _home(home)
    address = coordinator or recorded_address(coord_home)

    async def run() -> T:
        async with AdminClient(address, coord_home) as client:
            return await call(client)

    return asyncio.run(run())


@app.command()
def init(
    home: Path = HOME,
    host: list[str] = typer.Option(
        [], "--host", help="Extra name or address agents use to reach the server (repeatable)."
    ),
    encrypt_ca: bool = typer.Option(
        False,
        "--encrypt-ca",
        help="Encrypt the CA key with a passphrase (FEDPEER_CA_PASSPHRASE, else asked).",
    ),
) -> None:
    """Create the CA, the server and admin certificates, and the SQLite store."""
    passphrase = ca_passphrase("a passphrase for the CA key") if encrypt_ca else None
    if encrypt_ca and not passphrase:
        raise IdentityError(f"--encrypt-ca needs a passphrase: set {CA_PASSPHRASE_ENV}")
    coord_home = init_home(home, host, passphrase)
    Store(coord_home.database).close()
    console.print(f"Initialised coordinator home {home}")
    console.print(f"  CA certificate  {coord_home.ca_cert}")
    console.print(f"  store           {coord_home.database}")


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    home: Path = HOME,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(50051, help="Mutual-TLS port for agents and admin."),
    enrol_port: int = typer.Option(50052, "--enrol-port", help="Server-TLS enrolment port."),
    db: str | None = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in home)."),
    config_file: Path | None = CONFIG,
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Address of /metrics."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics on /metrics at this port."
    ),
) -> None:
    """Serve agents and administrators until interrupted.

    Settings: the command line, then FEDPEER_COORDINATOR_* variables, then --config.
    """
    config = load_config(config_file, overrides=_given(ctx, db="db_url"))
    _home(config.home)
    _check_ports(config.host, config.port, config.enrol_port)
    log_events()

    def started(running: RunningCoordinator) -> None:
        console.print(
            f"Serving on {running.address} (mutual TLS) and {running.enrol_address} (enrolment);"
            " Ctrl+C stops"
        )
        if running.metrics_port is not None:
            console.print(f"Metrics on http://{config.metrics_host}:{running.metrics_port}/metrics")

    asyncio.run(serve(config, started))


DB = typer.Option(None, "--db", help="SQLAlchemy URL of the store (default: SQLite in home).")


@app.command("backup")
def backup_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="The backup file to write (a .tar.gz)."),
    home: Path = HOME,
    db: str | None = DB,
    config_file: Path | None = CONFIG,
    with_keys: bool = typer.Option(
        False,
        "--with-keys",
        help="Also put the home's CA, server, admin and signing keys in it (a CA key kept"
        " offline is left out): then guard it like the CA key.",
    ),
) -> None:
    """Back up the store (consistent while serving), and with --with-keys the home's keys."""
    config = load_config(config_file, overrides=_given(ctx, db="db_url"))
    manifest = backup(_home(config.home), config.db_url, out, with_keys)
    console.print(
        f"Backed up the {manifest.store} store (schema revision {manifest.revision}) to {out}"
    )
    if manifest.home_files:
        console.print(f"  with the home's keys ({', '.join(manifest.home_files)}): keep it secret")
        if manifest.ca_key is CaKeyState.OFFLINE:
            console.print(
                "  without ca.key: it is not in the home (kept offline), so keep that copy as "
                "safely as this backup"
            )
        elif manifest.ca_key is CaKeyState.ENCRYPTED:
            console.print("  ca.key as the home holds it, encrypted: keep its passphrase apart")
    else:
        console.print("  without the CA key: back up the home's ca.key separately and securely")


@app.command("restore")
def restore_command(
    ctx: typer.Context,
    source: Path = typer.Option(..., "--from", help="A file written by `backup`."),
    home: Path = HOME,
    db: str | None = DB,
    config_file: Path | None = CONFIG,
    force: bool = typer.Option(
        False, "--force", help="Replace a store that holds data (and a home's other keys)."
    ),
) -> None:
    """Restore a backup into an empty store (stop the coordinator first)."""
    config = load_config(config_file, overrides=_given(ctx, db="db_url"))
    done = restore(CoordinatorHome(config.home), config.db_url, source, force)
    console.print(
        f"Restored the {done.manifest.store} store of {done.manifest.created_at} "
        f"(schema revision {done.manifest.revision}, now {done.revision})"
    )
    if done.home_files:
        console.print(f"  and the home's keys into {config.home}: {', '.join(done.home_files)}")
    if done.ca_key is CaKeyState.OFFLINE and done.has_signer:
        console.print(
            f"  {config.home} holds no CA key (kept offline): it serves with its signing key;"
            " enrolment and `signing-key rotate` need the CA key brought back"
        )
    elif done.ca_key is CaKeyState.OFFLINE:
        console.print(
            f"  {config.home} holds no CA key: put the coordinator's keys back before serving"
        )
    elif done.ca_key is CaKeyState.ENCRYPTED:
        console.print("  its CA key is encrypted: `serve` enrols only when given its passphrase")


def _check_ports(host: str, port: int, enrol_port: int) -> None:
    """Say in one line, before anything starts, why the coordinator could not listen."""
    if port and port == enrol_port:
        raise typer.BadParameter("it must differ from --port", param_hint="'--enrol-port'")
    for option, number in (("--port", port), ("--enrol-port", enrol_port)):
        if number:  # 0 lets the system choose a free port
            _check_free(host, number, option)


def _check_free(host: str, port: int, option: str) -> None:
    """Try to listen on ``host:port`` as gRPC would, and name the option to change if not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise typer.BadParameter(
                    f"port {port} on {host} is in use by another program: stop it, or choose "
                    "another port",
                    param_hint=f"'{option}'",
                ) from None
            raise typer.BadParameter(
                f"cannot listen on {host}: {exc.strerror}", param_hint="'--host'"
            ) from None


@practice_app.command("add")
def practice_add(
    practice_id: str = typer.Option(..., "--id", help="Practice id, e.g. its ODS code."),
    name: str = typer.Option(..., help="Practice name."),
    locality: str = typer.Option(..., help="Locality, PCN or neighbourhood."),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="For an enrolled practice: a token whose use replaces its current certificate.",
    ),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Invite a practice: print a one-time enrolment token for its agent."""
    made = _admin_call(
        home, coordinator, lambda c: c.invitation(practice_id, name, locality, replace)
    )
    if made.replaces_fingerprint:
        console.print(
            f"{practice_id} is enrolled (certificate {made.replaces_fingerprint[:16]}); its "
            "agent keeps working until this token is used, then the new certificate replaces it."
        )
    console.print(
        f"Practice IT: fedpeer-agent enrol --coordinator {made.agent_address} "
        f"--enrol-port {made.enrol_port} --token TOKEN  (outbound TCP to ports "
        f"{made.agent_address.rsplit(':', 1)[1]} and {made.enrol_port})",
        soft_wrap=True,
    )
    console.print(f"Enrolment token for {practice_id} (single use, expires {made.expires_at}):")
    console.print(made.token, soft_wrap=True)


@practice_app.command("list")
def practice_list(home: Path = HOME, coordinator: str | None = COORDINATOR) -> None:
    """List practices, enrolled or invited."""
    practices = _admin_call(home, coordinator, lambda c: c.practices())
    table = Table(
        Column("id", overflow="fold"),
        "name",
        "locality",
        "enrolled",
        Column("certificate", overflow="fold"),
        "revoked",
    )
    for p in practices:
        table.add_row(
            p.practice_id,
            p.name,
            p.locality,
            p.enrolled_at or "invited",
            p.cert_fingerprint[:16],
            "yes" if p.revoked else "",
        )
    console.print(table)


@practice_app.command("revoke")
def practice_revoke(
    practice_id: str = typer.Option(..., "--id", help="Practice id."),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Revoke a practice: its agent's certificate is refused from now on."""
    practice = _admin_call(home, coordinator, lambda c: c.revoke(practice_id))
    console.print(f"Revoked {practice.practice_id}; a new token re-enrols it with a new key.")


def _frame_table(frame: pd.DataFrame) -> Table:
    """A data frame as a table, empty cells blank, no value cut."""
    table = Table(*(Column(str(name), overflow="fold") for name in frame.columns))
    for record in frame.astype(object).where(frame.notna(), "").itertuples(index=False):
        table.add_row(*(str(v) for v in record))
    return table


@app.command()
def comparisons(
    round_id: str = typer.Argument(..., help="Round id."),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Compare the practices that released results in a round (as stored once it closed)."""
    comparison = _admin_call(home, coordinator, lambda c: c.comparison(round_id))
    if not comparison.indicators:
        console.print(f"Round {round_id} has no released results yet.")
        return
    print_comparison_table(comparison, console)


# -- studies ----------------------------------------------------------------------------


def _print_study(summary: admin_pb2.StudySummary) -> None:
    study = Study.from_bytes(summary.study)
    console.print(f"Study {study.study_id}: {study.title}")
    console.print(f"  owner: {study.owner}")
    console.print(f"  purpose: {study.purpose}")
    console.print(
        f"  as of {study.as_of}; at least {study.min_practices} practices; "
        f"privacy budget {study.budget_rho or 'none (no noise)'}"
    )
    console.print(f"  definitions: {', '.join(d.id for d in study.definitions)}")
    stage = f", stage {summary.stage}" if summary.stage else ""
    console.print(
        f"  state: {summary.state}{stage}" + (f" ({summary.detail})" if summary.detail else "")
    )
    if summary.members:
        joined = sum(m.state == "joined" for m in summary.members)
        console.print(f"  members: {joined} joined of {len(summary.members)} that answered")


@study_app.command("create")
def study_create(
    definitions: list[Path] = typer.Argument(
        ..., help="Definition files (TOML, codelists in codelists/ beside them)."
    ),
    owner: str = typer.Option(..., "--owner", help="The analyst who owns the study."),
    title: str = typer.Option(..., "--title", help="The study's title, in plain words."),
    purpose: str = typer.Option(..., "--purpose", help="Why it is asked, in plain words."),
    as_of: date = as_of_option(help="Reference date: a month end, YYYY-MM-DD."),
    min_practices: int = typer.Option(
        10, "--min-practices", help="Publish only a sum over at least this many practices."
    ),
    budget_rho: float = typer.Option(
        0.0, "--budget-rho", help="Privacy budget for noise on the pooled counts (0: none)."
    ),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Create a draft study; `study open` shows it to practices."""
    documents = []
    for path in definitions:
        if not path.is_file():
            raise typer.BadParameter(f"{path}: no such definition file", param_hint="DEFINITIONS")
        definition = load_definition(path)
        documents.append(DefinitionDocument.of(definition.id, serialize(definition)))
    summary = _admin_call(
        home,
        coordinator,
        lambda c: c.create_study(
            owner=owner,
            title=title,
            purpose=purpose,
            as_of=as_of,
            min_practices=min_practices,
            definitions=documents,
            budget_rho=budget_rho,
        ),
    )
    _print_study(summary)


@study_app.command("show")
def study_show(
    study_id: str = typer.Argument(..., help="Study id."),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """A study: what it asks, of whom, and where it stands."""
    _print_study(_admin_call(home, coordinator, lambda c: c.study(study_id)))


@study_app.command("list")
def study_list(home: Path = HOME, coordinator: str | None = COORDINATOR) -> None:
    """Every study."""
    table = Table(Column("study", overflow="fold"), "title", "owner", "as of", "state", "joined")
    for summary in _admin_call(home, coordinator, lambda c: c.studies()):
        study = Study.from_bytes(summary.study)
        joined = sum(m.state == "joined" for m in summary.members)
        table.add_row(
            study.study_id, study.title, study.owner, str(study.as_of), summary.state, str(joined)
        )
    console.print(table)


@study_app.command("open")
def study_open(
    study_id: str = typer.Argument(..., help="Study id."),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Show a draft study to practices, who may join it."""
    _print_study(_admin_call(home, coordinator, lambda c: c.open_study(study_id)))


@study_app.command("close")
def study_close(
    study_id: str = typer.Argument(..., help="Study id."),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """Close a study to joining: the secure aggregation among its members starts."""
    _print_study(_admin_call(home, coordinator, lambda c: c.close_study(study_id)))


@study_app.command("results")
def study_results(
    study_id: str = typer.Argument(..., help="Study id."),
    out: Path | None = typer.Option(
        None,
        "--out",
        callback=file_to_write,
        help="Write the results to a .csv or .parquet file.",
    ),
    home: Path = HOME,
    coordinator: str | None = COORDINATOR,
) -> None:
    """A published study's pooled results (never any single practice's)."""
    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise typer.BadParameter(
            f"{out.name}: write to a .csv or .parquet file", param_hint="'--out'"
        )
    frame = results_frame(_admin_call(home, coordinator, lambda c: c.study_results(study_id)))
    if out is not None:
        export(frame, out)
        console.print(f"Wrote {len(frame)} rows to {out}")
        return
    console.print(
        f"Study {study_id}: pooled over {frame.attrs['practices']} practices, "
        f"published {frame.attrs['published_at']}"
    )
    console.print(_frame_table(frame))


@analyst_app.command("add")
def analyst_add(
    name: str = typer.Argument(..., help="The analyst's name, exactly as studies name owners."),
    out: Path = typer.Option(
        ...,
        "--out",
        callback=folder_to_write,
        help="A new folder for the analyst's key and cert.",
    ),
    home: Path = HOME,
) -> None:
    """Issue an analyst certificate: it reads the pooled results of its own studies only."""
    issue_into(out, "analyst", home, lambda ca: ca.issue_analyst(name))
    console.print(f"Analyst {name}: key and certificate in {out} (keep the key private)")


def issue_into(
    out: Path,
    stem: str,
    home: Path,
    issue: Callable[[CertificateAuthority], tuple[ec.EllipticCurvePrivateKey, x509.Certificate]],
) -> None:
    """Issue a key and certificate with the home's CA into a new folder ``out``, with ca.crt."""
    if out.exists() and any(out.iterdir()):
        raise typer.BadParameter(f"{out} is not empty; choose a new folder", param_hint="'--out'")
    ca = _home(home).load_ca()
    key, cert = issue(ca)
    private_dir(out)
    create_private(out / f"{stem}.key", key_to_pem(key))
    (out / f"{stem}.crt").write_bytes(cert_to_pem(cert))
    (out / "ca.crt").write_bytes(ca.cert_pem)


cli_rounds.register(round_app, _admin_call, HOME, COORDINATOR)
cli_keys.register(app, HOME)
from coordinator import cli_submissions  # noqa: E402, F401  (registers submission, admin)


def main() -> None:
    """Entry point of ``fedpeer-coordinator``."""
    run_app(app)


if __name__ == "__main__":
    main()
