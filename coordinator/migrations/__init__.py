"""Alembic migrations of the coordinator store; ``Store`` applies them when it opens."""
