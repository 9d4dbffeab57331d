"""The ``fedpeer-coordinator`` command, saying so when the coordinator extra is missing.

``pip install fedpeer`` is the agent alone; a practice machine that runs
``fedpeer-coordinator`` should learn which install it needs, not read a traceback.
"""

from __future__ import annotations

import os
import sys

# Top-level modules of the ``coordinator`` extra (pyproject.toml).
EXTRA_MODULES = frozenset({"pandas", "alembic", "psycopg", "jinja2", "grpc_health"})


def main() -> None:
    """Entry point of ``fedpeer-coordinator``."""
    # gRPC's core writes a line for every failed TLS handshake, which anyone on the network
    # can cause as fast as they like; read once, when gRPC loads. GRPC_VERBOSITY=INFO in the
    # environment brings the lines back for debugging.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from coordinator.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in EXTRA_MODULES:
            raise
        sys.stderr.write(
            f"fedpeer-coordinator needs the coordinator's dependencies ({exc.name} is not "
            "installed): pip install 'fedpeer[coordinator]'. A practice's agent needs only "
            "`pip install fedpeer` and runs as fedpeer-agent.\n"
        )
        sys.exit(1)
    cli_main()


if __name__ == "__main__":
    main()
