"""Back up a coordinator's store, and restore it, on SQLite and PostgreSQL.

A backup is one gzip-compressed tar file (mode 0600) holding:

- ``backup.json``: the format (``fedpeer.backup/1``), when it was taken, the kind of store,
  the Alembic revision of its schema, and (PostgreSQL) the schema it was taken from;
- ``store.sqlite``: a SQLite store, copied with SQLite's online backup API, so a backup
  taken while the coordinator serves is consistent; or ``store.pgdump``: a PostgreSQL
  store's schema as ``pg_dump --format=custom`` writes it (one consistent snapshot),
  which ``pg_restore`` reads by hand too;
- with ``--with-keys`` only, ``home/``: the home's CA key and certificate, the server,
  admin and signing keys and certificates, and ``network.toml``. Without it the CA key
  is not in the backup and must be kept separately (see docs/operations.md). A CA key
  encrypted in the home goes in as it is; one kept offline (not in the home) is left
  out, and the manifest's ``ca_key`` says which (``coordinator.ca.CaKeyState``): the
  home restored from it serves with its signing key, the CA key still offline.

Restoring refuses to overwrite a store that holds data unless forced, refuses a backup
whose schema is newer than this version knows, and upgrades an older one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from coordinator.ca import CaKeyState, CoordinatorHome
from coordinator.store import MIGRATIONS, database_url, upgrade
from fedpeer.errors import StoreError
from fedpeer.private_files import private_dir, write_private

FORMAT = "fedpeer.backup/1"
MANIFEST = "backup.json"
SQLITE_MEMBER = "store.sqlite"
PGDUMP_MEMBER = "store.pgdump"
HOME_PREFIX = "home/"
HOME_FILES = ("ca.crt", "server.key", "server.crt", "admin.key", "admin.crt")
# The CA key may be kept offline, and homes from before signing keys have none (issue 10).
OPTIONAL_HOME_FILES = ("ca.key", "network.toml", "signing.key", "signing.crt")
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class Manifest:
    """What a backup holds."""

    store: str  # "sqlite" or "postgresql"
    revision: str | None  # the Alembic revision of the backed-up schema
    created_at: str
    schema: str | None = None  # PostgreSQL: the schema it was taken from
    home_files: tuple[str, ...] = ()
    ca_key: CaKeyState | None = None  # with the keys: the CA key as it was; else None
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        data = {
            "format": self.format,
            "created_at": self.created_at,
            "store": self.store,
            "revision": self.revision,
            "schema": self.schema,
            "home_files": list(self.home_files),
            "ca_key": None if self.ca_key is None else self.ca_key.value,
        }
        return json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, source: Path) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise StoreError(f"{source}: backup format {raw.get('format')!r}, not {FORMAT}")
            return cls(
                store=str(raw["store"]),
                revision=raw.get("revision"),
                created_at=str(raw["created_at"]),
                schema=raw.get("schema"),
                home_files=tuple(raw.get("home_files") or ()),
                ca_key=None if raw.get("ca_key") is None else CaKeyState(raw["ca_key"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(f"{source}: its {MANIFEST} is not a fedpeer backup manifest") from None


@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    manifest: Manifest
    revision: str  # the schema revision the store is at now
    home_files: tuple[str, ...]  # key and certificate files written into the home
    ca_key: CaKeyState  # the restored home's CA key
    has_signer: bool  # the restored home holds a signing key (it serves without the CA key)


# -- where the store is -----------------------------------------------------------------


def store_url(home: CoordinatorHome, db_url: str | None) -> str:
    """The store's SQLAlchemy URL: ``db_url``, or SQLite in the home."""
    return database_url(db_url or home.database)


def _kind(url: str) -> str:
    backend = sa.engine.make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"backups cover SQLite and PostgreSQL stores, not {backend}")
    return backend


def _sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise StoreError("an in-memory SQLite store cannot be backed up or restored")
    return Path(database)


# -- Alembic revisions ------------------------------------------------------------------


def _script() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head_revision() -> str:
    """The schema revision this version of fedpeer writes."""
    return str(_script().get_current_head())


def _check_known(revision: str | None, source: Path) -> None:
    if revision is None:
        return
    known = {r.revision for r in _script().walk_revisions()}
    if revision not in known:
        raise StoreError(
            f"{source}: the backup's schema revision {revision} is newer than this fedpeer "
            f"knows (latest {head_revision()}); restore it with the version that took it"
        )


def _revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


# -- the archive ------------------------------------------------------------------------


@contextlib.contextmanager
def _private_output(out: Path) -> Iterator[Path]:
    """A temporary file beside ``out`` (0600), moved onto ``out`` only when all went well."""
    if not out.parent.is_dir():
        raise StoreError(f"{out.parent}: no such folder")
    if out.is_dir():
        raise StoreError(f"{out} is a folder; name the backup file to write")
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    partial = Path(name)
    os.chmod(partial, 0o600)
    try:
        yield partial
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with path.open("rb") as data:
        tar.addfile(info, data)


def _member(tar: tarfile.TarFile, name: str, source: Path) -> bytes:
    try:
        extracted = tar.extractfile(name)
    except KeyError:
        extracted = None
    if extracted is None:
        raise StoreError(f"{source}: the backup holds no {name}")
    with extracted:
        return extracted.read()


def _extract_to(tar: tarfile.TarFile, name: str, target: Path, source: Path) -> None:
    try:
        extracted = tar.extractfile(name)
    except KeyError:
        extracted = None
    if extracted is None:
        raise StoreError(f"{source}: the backup holds no {name}")
    with extracted, target.open("wb") as out:
        shutil.copyfileobj(extracted, out)


def read_manifest(source: Path) -> Manifest:
    """The manifest of a backup file."""
    with _open_archive(source) as tar:
        return Manifest.from_bytes(_member(tar, MANIFEST, source), source)


@contextlib.contextmanager
def _open_archive(source: Path) -> Iterator[tarfile.TarFile]:
    if not source.is_file():
        raise StoreError(f"{source}: no such backup file")
    try:
        with tarfile.open(source, "r:*") as tar:
            yield tar
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StoreError(f"{source}: not a readable fedpeer backup ({exc})") from None


# -- SQLite -----------------------------------------------------------------------------


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy a SQLite database with the online backup API (consistent under writers)."""
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(target)
        try:
            src.execute("PRAGMA busy_timeout=10000")
            src.backup(dst)
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_standalone(path: Path) -> str | None:
    """Make a copied SQLite file self-contained (no WAL), check it, return its revision."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        ok = conn.execute("PRAGMA integrity_check").fetchone()
        if ok is None or ok[0] != "ok":
            raise StoreError(f"the SQLite store copy fails its integrity check: {ok}")
        if conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone():
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return None if row is None else str(row[0])
        return None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"not a usable SQLite store ({exc})") from None
    finally:
        conn.close()


def _sqlite_holds_data(path: Path) -> list[str]:
    """The tables of a SQLite store that hold rows (the schema version aside)."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        quoted = [n for n in names if n != "alembic_version"]
        return [n for n in quoted if conn.execute(f'SELECT 1 FROM "{n}" LIMIT 1').fetchone()]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a SQLite store ({exc})") from None
    finally:
        conn.close()


# -- PostgreSQL -------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """The path of ``pg_dump`` or ``pg_restore``: on PATH, else the newest installed."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        digits = re.findall(r"\d+", Path(path).parent.name)
        return tuple(int(d) for d in digits)

    for folder in sorted(glob.glob(PG_BIN_GLOB), key=version, reverse=True):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise StoreError(
        f"{name} not found on PATH or in {PG_BIN_GLOB}: install the PostgreSQL client "
        "tools (e.g. the postgresql-client package), as new as the server"
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` and the environment carrying its password."""
    parsed = sa.engine.make_url(url)
    params: dict[str, str] = {}
    if parsed.host:
        params["host"] = parsed.host
    if parsed.port:
        params["port"] = str(parsed.port)
    if parsed.username:
        params["user"] = parsed.username
    if parsed.database:
        params["dbname"] = parsed.database
    for key, value in parsed.query.items():
        params[key] = value if isinstance(value, str) else value[-1]

    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)  # never on a command line others can read
    return " ".join(f"{k}={quote(v)}" for k, v in params.items()), env


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StoreError(f"{what}: cannot run {args[0]} ({exc})") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise StoreError(f"{what} failed: {reason}")
    return done.stdout


def _pg_engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _pg_schema(conn: sa.Connection, url: str) -> str:
    schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
    if not schema:
        raise StoreError(
            f"{sa.engine.make_url(url).render_as_string(hide_password=True)}: "
            "no schema of its search_path exists"
        )
    return str(schema)


def _pg_tables(conn: sa.Connection, schema: str) -> list[str]:
    return list(sa.inspect(conn).get_table_names(schema=schema))


def _quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _pg_holds_data(conn: sa.Connection, schema: str) -> list[str]:
    s = _quote(conn, schema)
    return [
        t
        for t in _pg_tables(conn, schema)
        if t != "alembic_version"
        and conn.execute(sa.text(f"SELECT 1 FROM {s}.{_quote(conn, t)} LIMIT 1")).first()
    ]


def _unreachable(exc: sa.exc.OperationalError) -> StoreError:
    lines = str(exc.orig).strip().splitlines() or ["no answer"]
    return StoreError(f"cannot reach the store: {lines[0]}")


def _pg_backup(url: str, dump: Path) -> Manifest:
    pg_dump = pg_tool("pg_dump")  # fail before anything else
    engine = _pg_engine(url)
    try:
        with engine.connect() as conn:
            schema = _pg_schema(conn, url)
            revision = _revision(conn)
    except sa.exc.OperationalError as exc:
        raise _unreachable(exc) from None
    finally:
        engine.dispose()
    conninfo, env = _libpq(url)
    _run(
        [
            pg_dump,
            "--format=custom",
            '--schema="{}"'.format(schema.replace('"', '""')),  # exactly this one, not a pattern
            f"--file={dump}",
            conninfo,
        ],
        env,
        "pg_dump",
    )
    return Manifest("postgresql", revision, _now(), schema=schema)


def _restore_list(dump: Path, env: dict[str, str]) -> str:
    """The dump's table of contents without its CREATE SCHEMA (the target's schema is used)."""
    toc = _run([pg_tool("pg_restore"), "--list", str(dump)], env, "pg_restore --list")
    keep = [
        line
        for line in toc.splitlines()
        if not re.match(r"^\d+; \d+ \d+ (SCHEMA|COMMENT) - (SCHEMA )?\S+", line)
    ]
    return "\n".join(keep) + "\n"


def _pg_restore(url: str, dump: Path, manifest: Manifest, force: bool) -> None:
    conninfo, env = _libpq(url)
    pg_restore = pg_tool("pg_restore")  # fail before touching anything
    engine = _pg_engine(url)
    try:
        with engine.begin() as conn:
            target = _pg_schema(conn, url)
            holding = _pg_holds_data(conn, target)
            if holding and not force:
                raise StoreError(
                    f"the target store already holds data (in {', '.join(holding)}); "
                    "restore into an empty one, or replace it with --force"
                )
            origin = manifest.schema or target
            if origin != target:
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": origin}
                ).first()
                if exists:
                    raise StoreError(
                        f"the backup's schema {origin} also exists in the target database; "
                        "restore into a database without it"
                    )
            for table in _pg_tables(conn, target):
                conn.execute(
                    sa.text(f"DROP TABLE {_quote(conn, target)}.{_quote(conn, table)} CASCADE")
                )
            if origin != target:
                # pg_restore recreates objects in the schema they were dumped from; the
                # target schema takes that name while it does, keeping its owner and grants.
                conn.execute(
                    sa.text(f"ALTER SCHEMA {_quote(conn, target)} RENAME TO {_quote(conn, origin)}")
                )
        with tempfile.TemporaryDirectory() as scratch:
            listing = Path(scratch) / "toc.list"
            listing.write_text(_restore_list(dump, env), encoding="utf-8")
            try:
                _run(
                    [
                        pg_restore,
                        "--no-owner",
                        "--no-privileges",
                        "--exit-on-error",
                        "--single-transaction",
                        f"--use-list={listing}",
                        f"--dbname={conninfo}",
                        str(dump),
                    ],
                    env,
                    "pg_restore",
                )
            finally:
                if origin != target:
                    with engine.begin() as conn:
                        conn.execute(
                            sa.text(
                                f"ALTER SCHEMA {_quote(conn, origin)} "
                                f"RENAME TO {_quote(conn, target)}"
                            )
                        )
    except sa.exc.OperationalError as exc:
        raise _unreachable(exc) from None
    finally:
        engine.dispose()


# -- backup and restore -----------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def backup(
    home: CoordinatorHome, db_url: str | None, out: Path, with_keys: bool = False
) -> Manifest:
    """Write a backup of the store (and, with ``with_keys``, the home's keys) to ``out``."""
    url = store_url(home, db_url)
    kind = _kind(url)
    home_files: list[tuple[str, Path]] = []
    ca_key = None
    if with_keys:
        for name in (*HOME_FILES, *OPTIONAL_HOME_FILES):
            path = home.root / name
            if path.is_file():
                home_files.append((name, path))
            elif name in HOME_FILES:
                raise StoreError(f"{home.root} holds no {name}: is it a coordinator home?")
        ca_key = home.ca_key_state()  # an encrypted key goes in as it is; none when offline
    with tempfile.TemporaryDirectory(prefix="fedpeer-backup-") as scratch:
        if kind == "sqlite":
            path = _sqlite_path(url)
            if not path.is_file():
                raise StoreError(f"{path}: no such SQLite store")
            copy = Path(scratch) / SQLITE_MEMBER
            try:
                _sqlite_copy(path, copy)
            except sqlite3.Error as exc:
                raise StoreError(f"{path}: cannot back it up ({exc})") from None
            manifest = Manifest("sqlite", _sqlite_standalone(copy), _now())
        else:
            copy = Path(scratch) / PGDUMP_MEMBER
            manifest = _pg_backup(url, copy)
        manifest = Manifest(
            manifest.store,
            manifest.revision,
            manifest.created_at,
            manifest.schema,
            tuple(name for name, _ in home_files),
            ca_key,
        )
        with _private_output(out) as partial, tarfile.open(partial, "w:gz") as tar:
            _add_bytes(tar, MANIFEST, manifest.to_bytes())
            _add_file(tar, copy.name, copy)
            for name, path in home_files:
                _add_file(tar, HOME_PREFIX + name, path)
    return manifest


def _restore_home(
    home: CoordinatorHome, tar: tarfile.TarFile, manifest: Manifest, force: bool, source: Path
) -> tuple[str, ...]:
    if not manifest.home_files:
        return ()
    files = {name: _member(tar, HOME_PREFIX + name, source) for name in manifest.home_files}
    unknown = set(files) - {*HOME_FILES, *OPTIONAL_HOME_FILES}
    if unknown:
        raise StoreError(f"{source}: unexpected files in the backup: {', '.join(sorted(unknown))}")
    same_ca = home.ca_cert.exists() and home.ca_cert.read_bytes() == files.get("ca.crt")
    if home.ca_cert.exists() and not force:
        if same_ca:
            return ()  # the same CA is already here
        raise StoreError(
            f"{home.root} holds another CA than the backup's; restore into a new home, "
            "or replace its keys with --force"
        )
    if "ca.key" not in files and home.ca_key.exists() and not same_ca:
        raise StoreError(
            f"{home.ca_key} is another CA's key, and the backup (taken with the CA key "
            "offline) holds none to replace it: move it away, then restore"
        )
    private_dir(home.root)
    for name, data in files.items():
        write_private(home.root / name, data)
    return tuple(files)


def restore(
    home: CoordinatorHome, db_url: str | None, source: Path, force: bool = False
) -> Restored:
    """Restore a backup into the store (and its keys, if it holds them, into the home).

    Refuses a store holding data unless ``force``, and a backup whose schema is newer
    than this version; upgrades an older schema to this version's after restoring.
    """
    url = store_url(home, db_url)
    kind = _kind(url)
    with _open_archive(source) as tar:
        manifest = Manifest.from_bytes(_member(tar, MANIFEST, source), source)
        if manifest.store != kind:
            raise StoreError(
                f"{source} is a backup of a {manifest.store} store; the target is {kind} "
                "(restore into the same kind of store)"
            )
        _check_known(manifest.revision, source)
        with tempfile.TemporaryDirectory(prefix="fedpeer-restore-") as scratch:
            if kind == "sqlite":
                target = _sqlite_path(url)
                holding = _sqlite_holds_data(target)
                if holding and not force:
                    raise StoreError(
                        f"{target} already holds data (in {', '.join(holding)}); restore into "
                        "an empty store, or replace it with --force"
                    )
                copy = Path(scratch) / SQLITE_MEMBER
                _extract_to(tar, SQLITE_MEMBER, copy, source)
                _sqlite_standalone(copy)
                home_files = _restore_home(home, tar, manifest, force, source)
                private_dir(target.parent)
                try:
                    _sqlite_copy(copy, target)
                except sqlite3.Error as exc:
                    raise StoreError(f"{target}: cannot restore into it ({exc})") from None
            else:
                dump = Path(scratch) / PGDUMP_MEMBER
                _extract_to(tar, PGDUMP_MEMBER, dump, source)
                home_files = _restore_home(home, tar, manifest, force, source)
                _pg_restore(url, dump, manifest, force)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        upgrade(engine)  # a backup from an older version is brought up to this one
        with engine.connect() as conn:
            revision = _revision(conn) or ""
    finally:
        engine.dispose()
    has_signer = home.signing_key.exists() and home.signing_cert.exists()
    return Restored(manifest, revision, home_files, home.ca_key_state(), has_signer)
