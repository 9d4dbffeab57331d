"""Alembic environment: run migrations on the connection ``Store`` passes in."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from coordinator.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn: sa.Connection) -> None:
    # Batch mode lets later revisions alter SQLite tables (copy-and-move under the hood).
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # pragma: no cover - `alembic` run by hand with sqlalchemy.url set
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
