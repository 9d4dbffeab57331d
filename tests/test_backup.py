"""Backups of the store taken while serving, restored into a new home and store that serves."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import stat
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, fixed_prepare, refusing_prepare, start
from cryptography import x509
from test_signing_key_passphrase import PASSPHRASE
from typer.testing import CliRunner

from agent.client import Agent, enrol
from coordinator import backup as backup_module
from coordinator.backup import backup, head_revision, read_manifest, restore
from coordinator.ca import CA_PASSPHRASE_ENV, CaKeyState, CoordinatorHome, init_home
from coordinator.cli import app
from coordinator.server import CoordinatorConfig, start_coordinator
from coordinator.store import Store, upgrade
from fedpeer.errors import FedpeerError, StoreError
from fedpeer.identity import key_from_pem, key_to_pem
from fedpeer.signing import verify_receipt

runner = CliRunner()


@pytest.fixture
def new_database(postgres_engine: sa.Engine) -> Iterator[Callable[[], str]]:
    """Makes fresh, uniquely named databases on the test server (restore targets), dropped
    afterwards; their default schema is ``public``, unlike ``postgres_url``'s."""
    admin_engine = postgres_engine.execution_options(isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return postgres_engine.url.set(database=name).render_as_string(hide_password=False)

    yield make
    with admin_engine.connect() as conn:
        for name in made:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest) -> tuple[str | None, str | None]:
    """(source, target) store URLs: None for SQLite in each home."""
    if request.param == "sqlite":
        return None, None
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("new_database")()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # as one line, however the console wrapped it


async def populated(home: Path, agents_dir: Path, db_url: str | None) -> tuple[object, str]:
    """A served coordinator with three practices (two enrolled), a round answered by one
    and refused by the other, and a second, closed round."""
    running = await start(home, db_url)
    async with admin(running) as adm:
        for pid, prepare in (
            ("A81001", fixed_prepare("A81001")),
            ("A81002", refusing_prepare("not this month")),
        ):
            token, _ = await adm.invite(pid, f"Practice {pid}", "North")
            await enrol(running.address, running.enrol_port, token, agents_dir / pid)
            await Agent(agents_dir / pid, prepare).run_once()  # nothing open yet
        await adm.invite("A81003", "Practice A81003", "South")
        closed = await adm.start_round(AS_OF, DEFINITIONS)
        await adm.close_round(closed.round_id)
        round_ = await adm.start_round(AS_OF, DEFINITIONS)
        for pid, prepare in (
            ("A81001", fixed_prepare("A81001")),
            ("A81002", refusing_prepare("not this month")),
        ):
            outcomes = await Agent(agents_dir / pid, prepare).run_once()
            assert {o.round_id for o in outcomes} == {round_.round_id}
    return running, round_.round_id


async def test_backup_while_serving_restores_into_a_new_home_that_serves(
    tmp_path: Path, databases: tuple[str | None, str | None]
) -> None:
    source_db, target_db = databases
    old_home = tmp_path / "old"
    running, round_id = await populated(old_home, tmp_path / "agents", source_db)
    out = tmp_path / "backups" / "coordinator.tar.gz"
    out.parent.mkdir()
    try:
        db_args = ["--db", source_db] if source_db else []
        said = cli("backup", "--home", str(old_home), *db_args, "--out", str(out), "--with-keys")
        assert "with the home's keys" in said
    finally:
        await running.stop(0)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    manifest = read_manifest(out)
    assert manifest.store == ("sqlite" if source_db is None else "postgresql")
    assert manifest.revision == head_revision()
    assert "ca.key" in manifest.home_files
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"backup.json", "home/ca.key", "home/admin.crt"} <= set(members)
    assert all(m.mode == 0o600 for m in members.values())

    new_home = tmp_path / "new"  # nothing there: the keys come from the backup
    db_args = ["--db", target_db] if target_db else []
    said = cli("restore", "--home", str(new_home), *db_args, "--from", str(out))
    assert f"now {head_revision()}" in said
    assert (new_home / "ca.key").read_bytes() == (old_home / "ca.key").read_bytes()
    assert stat.S_IMODE((new_home / "ca.key").stat().st_mode) == 0o600

    restored = await start(new_home, target_db)
    try:
        async with admin(restored) as adm:
            practices = {p.practice_id: p for p in await adm.practices()}
            assert set(practices) == {"A81001", "A81002", "A81003"}
            assert practices["A81003"].locality == "South" and not practices["A81003"].enrolled_at
            assert practices["A81001"].cert_fingerprint
            status = await adm.status(round_id)
            assert status.state == "open"
            assert {p.practice_id: p.state for p in status.practices} == {
                "A81001": "submitted",
                "A81002": "refused",
            }
            rows = await adm.comparisons(round_id)
            assert {r.practice_id for r in rows} == {"A81001"}
        # The agent enrolled before the backup is still trusted by the restored CA.
        agent = Agent(tmp_path / "agents" / "A81001", fixed_prepare("A81001"))
        agent.identity = dataclasses.replace(agent.identity, coordinator=restored.address)
        outcomes = await agent.run_once()
        assert [(o.round_id, o.status) for o in outcomes] == [(round_id, "already")]
    finally:
        await restored.stop(0)

    # The restored store now holds data: a second restore is refused unless forced.
    result = runner.invoke(app, ["restore", "--home", str(new_home), *db_args, "--from", str(out)])
    assert isinstance(result.exception, StoreError)
    assert "already holds data" in str(result.exception)
    said = cli("restore", "--home", str(new_home), *db_args, "--from", str(out), "--force")
    assert "Restored" in said


@pytest.mark.parametrize("how", ["offline", "encrypted"])
async def test_backup_with_keys_while_the_ca_key_is_offline_restores_and_serves(
    tmp_path: Path,
    databases: tuple[str | None, str | None],
    how: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source_db, target_db = databases
    old_home = tmp_path / "old"
    running, round_id = await populated(old_home, tmp_path / "agents", source_db)
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)  # and pytest's stdin is no terminal
    if how == "offline":
        (old_home / "ca.key").rename(tmp_path / "ca.key.offline")
    else:
        key = key_from_pem((old_home / "ca.key").read_bytes())
        (old_home / "ca.key").write_bytes(key_to_pem(key, PASSPHRASE))
    out = tmp_path / "coordinator.tar.gz"
    try:
        db_args = ["--db", source_db] if source_db else []
        said = cli("backup", "--home", str(old_home), *db_args, "--out", str(out), "--with-keys")
    finally:
        await running.stop(0)
    manifest = read_manifest(out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        kept = tar.extractfile("home/ca.key") if "home/ca.key" in names else None
        kept_key = None if kept is None else kept.read()
    assert {"home/ca.crt", "home/signing.key", "home/signing.crt"} <= names
    if how == "offline":
        assert manifest.ca_key is CaKeyState.OFFLINE and "ca.key" not in manifest.home_files
        assert kept_key is None
        assert "without ca.key: it is not in the home (kept offline)" in said
    else:
        assert manifest.ca_key is CaKeyState.ENCRYPTED and "ca.key" in manifest.home_files
        assert kept_key == (old_home / "ca.key").read_bytes()  # as it is: still encrypted
        assert "ca.key as the home holds it, encrypted" in said

    new_home = tmp_path / "new"
    db_args = ["--db", target_db] if target_db else []
    said = cli("restore", "--home", str(new_home), *db_args, "--from", str(out))
    if how == "offline":
        assert not (new_home / "ca.key").exists()
        assert "holds no CA key (kept offline): it serves with its signing key" in said
    else:
        assert (new_home / "ca.key").read_bytes() == kept_key
        assert "its CA key is encrypted" in said

    config = CoordinatorConfig(home=new_home, db_url=target_db, announce_poll_seconds=0.2)
    restored = await start_coordinator(config)
    try:
        assert restored.ca.authority is None  # serving, the CA key still offline or locked
        signing_cert = (old_home / "signing.crt").read_bytes()
        assert restored.ca.signer.cert == x509.load_pem_x509_certificate(signing_cert)
        async with admin(restored) as adm:
            assert (await adm.status(round_id)).state == "open"
            second = await adm.start_round(dt.date(2026, 10, 31), DEFINITIONS)
            token, _ = await adm.invite("A81004", "Practice A81004", "South")
        with pytest.raises(FedpeerError, match="enrolment needs the CA key"):
            await enrol(restored.address, restored.enrol_port, token, tmp_path / "A81004")
        agent = Agent(tmp_path / "agents" / "A81001", fixed_prepare("A81001"))
        agent.identity = dataclasses.replace(agent.identity, coordinator=restored.address)
        outcomes = {o.round_id: o for o in await agent.run_once()}
        assert outcomes[round_id].status == "already"
        assert outcomes[second.round_id].status == "submitted"
        receipt = outcomes[second.round_id].receipt
        assert receipt is not None
        verify_receipt(agent.identity.ca_cert, receipt)  # the restored signing key's
    finally:
        await restored.stop(0)


def test_a_backup_without_the_ca_key_leaves_no_other_cas_key_in_place(tmp_path: Path) -> None:
    _seed(tmp_path / "old")
    (tmp_path / "old" / "ca.key").unlink()  # kept offline
    out = tmp_path / "b.tar.gz"
    backup(CoordinatorHome(tmp_path / "old"), None, out, with_keys=True)
    init_home(tmp_path / "other")
    other_key = (tmp_path / "other" / "ca.key").read_bytes()
    with pytest.raises(StoreError, match=r"ca\.key is another CA.s key, and the backup"):
        restore(CoordinatorHome(tmp_path / "other"), None, out, force=True)
    assert (tmp_path / "other" / "ca.key").read_bytes() == other_key
    assert not (tmp_path / "other" / "coordinator.sqlite").exists()  # nothing was touched


def _sqlite_count(path: Path, table: str) -> int:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar())
    finally:
        engine.dispose()


def _seed(home: Path) -> None:
    init_home(home)
    store = Store(CoordinatorHome(home).database)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO practices VALUES ('P1', 'One', 'North', NULL, NULL, false)")
        )
    store.close()


def test_store_only_backup_into_an_initialised_home(tmp_path: Path) -> None:
    _seed(tmp_path / "old")
    out = tmp_path / "b.tar.gz"
    said = cli("backup", "--home", str(tmp_path / "old"), "--out", str(out))
    assert "without the CA key" in said
    assert read_manifest(out).home_files == ()
    # A home just made by `init` has an empty store: restoring into it needs no --force.
    init_home(tmp_path / "new")
    Store(CoordinatorHome(tmp_path / "new").database).close()
    done = restore(CoordinatorHome(tmp_path / "new"), None, out)
    assert done.home_files == () and done.ca_key is CaKeyState.PLAIN
    assert _sqlite_count(tmp_path / "new" / "coordinator.sqlite", "practices") == 1
    # Into a home without a CA: restored, with a reminder that the keys are missing.
    said = cli("restore", "--home", str(tmp_path / "bare"), "--from", str(out))
    assert "holds no CA key" in said
    assert _sqlite_count(tmp_path / "bare" / "coordinator.sqlite", "practices") == 1


def test_keys_of_another_ca_are_not_overwritten(tmp_path: Path) -> None:
    _seed(tmp_path / "old")
    out = tmp_path / "b.tar.gz"
    backup(CoordinatorHome(tmp_path / "old"), None, out, with_keys=True)
    init_home(tmp_path / "other")
    with pytest.raises(StoreError, match="holds another CA"):
        restore(CoordinatorHome(tmp_path / "other"), None, out)
    assert not (tmp_path / "other" / "coordinator.sqlite").exists()  # nothing was touched
    done = restore(CoordinatorHome(tmp_path / "other"), None, out, force=True)
    assert "ca.key" in done.home_files
    assert (tmp_path / "other" / "ca.crt").read_bytes() == (
        tmp_path / "old" / "ca.crt"
    ).read_bytes()


def test_an_older_schema_is_upgraded_and_a_newer_one_refused(tmp_path: Path) -> None:
    home = CoordinatorHome(tmp_path / "old")
    home.root.mkdir()
    engine = sa.create_engine(f"sqlite:///{home.database}")
    upgrade(engine, "0002")
    engine.dispose()
    out = tmp_path / "old.tar.gz"
    assert backup(home, None, out).revision == "0002"
    done = restore(CoordinatorHome(tmp_path / "new"), None, out)
    assert (done.manifest.revision, done.revision) == ("0002", head_revision())

    # A backup from a future version: refused before anything is written.
    newer = tmp_path / "newer.tar.gz"
    with tarfile.open(out) as src, tarfile.open(newer, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "backup.json":
                manifest = json.loads(data)
                manifest["revision"] = "9999"
                data = json.dumps(manifest).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(StoreError, match="revision 9999 is newer than this fedpeer knows"):
        restore(CoordinatorHome(tmp_path / "newest"), None, newer)
    assert not (tmp_path / "newest").exists()


def test_wrong_inputs_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path / "old")
    out = tmp_path / "b.tar.gz"
    backup(CoordinatorHome(tmp_path / "old"), None, out)
    home = CoordinatorHome(tmp_path / "new")
    pg = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with pytest.raises(StoreError, match="a backup of a sqlite store; the target is postgresql"):
        restore(home, pg, out)
    with pytest.raises(StoreError, match="no such backup file"):
        restore(home, None, tmp_path / "absent.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar file")
    with pytest.raises(StoreError, match="not a readable fedpeer backup"):
        restore(home, None, tmp_path / "junk.tar.gz")
    with pytest.raises(StoreError, match="no such SQLite store"):
        backup(CoordinatorHome(tmp_path / "nothing"), None, tmp_path / "x.tar.gz")
    with pytest.raises(StoreError, match="is a folder"):
        backup(CoordinatorHome(tmp_path / "old"), None, tmp_path)
    with pytest.raises(StoreError, match="no such folder"):
        backup(CoordinatorHome(tmp_path / "old"), None, tmp_path / "absent" / "x.tar.gz")

    if backup_module.shutil.which("pg_dump") or list(Path("/usr/lib/postgresql").glob("*/bin")):
        with pytest.raises(StoreError, match=r"^cannot reach the store: [^\n]*$"):
            backup(CoordinatorHome(tmp_path / "old"), pg, tmp_path / "pg.tar.gz")

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(backup_module, "PG_BIN_GLOB", str(tmp_path / "nowhere" / "*" / "bin"))
    with pytest.raises(StoreError) as missing:
        backup(CoordinatorHome(tmp_path / "old"), pg, tmp_path / "pg.tar.gz")
    assert str(missing.value).startswith("pg_dump not found on PATH or in ")
    assert "\n" not in str(missing.value)


@pytest.mark.postgres
def test_pg_tools_are_found_outside_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    # The PostgreSQL server's package brings its client tools: wherever this test runs
    # (the server answered; CI installs it) they are there, or the test fails.
    assert installed, "the PostgreSQL server answers, but /usr/lib/postgresql has no pg_dump"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert backup_module.pg_tool("pg_dump") == str(installed[-1])
    Store(postgres_url).close()
    manifest = backup(CoordinatorHome(tmp_path), postgres_url, tmp_path / "pg.tar.gz")
    assert manifest.store == "postgresql" and manifest.schema.startswith("t_")


@pytest.mark.postgres
def test_pg_store_in_public_restores_into_public(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    """The usual case: a database of its own, the store in ``public``, restored into
    another database's ``public`` (the backup's own CREATE SCHEMA is left out)."""
    source, target = new_database(), new_database()
    store = Store(source)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO practices VALUES ('P1', 'One', 'North', NULL, NULL, false)")
        )
    store.close()
    out = tmp_path / "pg.tar.gz"
    assert backup(CoordinatorHome(tmp_path), source, out).schema == "public"
    done = restore(CoordinatorHome(tmp_path / "new"), target, out)
    assert done.revision == head_revision()
    engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM public.practices")).scalars().all() == ["One"]
    engine.dispose()
