"""Shared fixtures: a real PostgreSQL schema per test session, never skipped in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from coordinator.store import Store

POSTGRES_URL = os.environ.get(
    "FEDPEER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_required() -> bool:
    return os.environ.get("FEDPEER_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"


@pytest.fixture
def postgres_required() -> bool:
    """True where PostgreSQL must be there (CI): what needs it fails rather than skips."""
    return _postgres_required()


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[sa.Engine]:
    """An engine on the test PostgreSQL server; skipped only outside CI when it is down."""
    engine = sa.create_engine(POSTGRES_URL, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        if _postgres_required():
            raise RuntimeError(
                f"PostgreSQL is required here and unreachable at {POSTGRES_URL}"
            ) from exc
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_URL} (set FEDPEER_REQUIRE_POSTGRES=1 to fail)"
        )
    yield engine
    engine.dispose()


def _fresh(engine: sa.Engine, kind: str, drop_options: str) -> Iterator[str]:
    """Create a uniquely named ``kind`` (SCHEMA, DATABASE), yield its name, drop it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(sa.text(f'CREATE {kind} "{name}"'))
    try:
        yield name
    finally:
        with autocommit.connect() as conn:
            conn.execute(sa.text(f'DROP {kind} IF EXISTS "{name}" {drop_options}'))


@pytest.fixture
def postgres_schema(postgres_engine: sa.Engine) -> Iterator[str]:
    """A fresh, uniquely named schema on the test server, dropped afterwards."""
    yield from _fresh(postgres_engine, "SCHEMA", "CASCADE")


@pytest.fixture
def postgres_url(postgres_schema: str) -> str:
    """A SQLAlchemy URL whose connections default to a fresh schema (search_path)."""
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{postgres_schema}"


@pytest.fixture
def postgres_database(postgres_engine: sa.Engine) -> Iterator[str]:
    """A fresh, uniquely named database on the test server (its name), dropped afterwards.

    For tests that need a whole database: several coordinator processes, or an outage.
    """
    yield from _fresh(postgres_engine, "DATABASE", "WITH (FORCE)")


@pytest.fixture
def postgres_database_url(postgres_database: str) -> str:
    """The SQLAlchemy URL of a fresh database on the test server."""
    url = sa.make_url(POSTGRES_URL).set(database=postgres_database)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """A coordinator home made by `fedpeer-coordinator init` and served by a real `serve`."""
    from _processes import init_home, serving

    with serving(init_home(tmp_path / "coord")) as running:
        yield running.home


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """Each store in turn: None for the SQLite file in a coordinator's home, else PostgreSQL."""
    return None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db_url: str | None, tmp_path: Path) -> Iterator[Store]:
    """An open coordinator store of each kind in turn (SQLite in ``tmp_path``, PostgreSQL)."""
    opened = Store(db_url or tmp_path / "store.sqlite")
    yield opened
    opened.close()
