"""An agent built on the first v1 stubs, against today's coordinator, over mutual TLS.

The protos as they were before signed releases (``test_proto_compat.EARLIER``) are taken
from git history and compiled to Python stubs; a separate Python process imports only
those stubs and grpc, and calls the running coordinator with an enrolled practice's
certificate. What the old agent could do, it still can (list rounds, fetch a round);
what changed its meaning (a submission without a signed release document) is refused
with a sentence saying what to upgrade.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from _coordinator_helpers import AS_OF, DEFINITIONS, admin, start
from test_proto_compat import EARLIER, PROTO_DIR, _git, _history_available

from agent.client import enrol

pytestmark = pytest.mark.skipif(
    not _history_available(), reason="needs the git history (a source checkout, not a sdist)"
)

OLD_AGENT = r"""
import json, sys
import grpc
from fedpeer.v1 import agent_pb2, agent_pb2_grpc
address, ca, key, cert = sys.argv[1:5]
creds = grpc.ssl_channel_credentials(open(ca, "rb").read(), open(key, "rb").read(),
                                     open(cert, "rb").read())
out = {"stubs": agent_pb2.__file__}
with grpc.secure_channel(address, creds) as channel:
    stub = agent_pb2_grpc.AgentStub(channel)
    listed = stub.ListOpenRounds(agent_pb2.ListOpenRoundsRequest(), timeout=30)
    out["rounds"] = [r.round_id for r in listed.rounds]
    got = stub.GetRound(agent_pb2.GetRoundRequest(round_id=out["rounds"][0]), timeout=30)
    out["round"] = [got.round_id, got.as_of, [d.id for d in got.definitions]]
    try:
        stub.Submit(agent_pb2.SubmitRequest(round_id=got.round_id, idempotency_key="0" * 64),
                    timeout=30)
        out["submit"] = "accepted"
    except grpc.RpcError as exc:
        out["submit"] = [exc.code().name, exc.details()]
print(json.dumps(out))
"""


def _old_stubs(commit: str, tmp: Path) -> Path:
    from grpc_tools import protoc

    protos, stubs = tmp / "proto", tmp / "stubs"
    for name in _git("ls-tree", "--name-only", commit, PROTO_DIR + "/").split():
        target = protos / name.removeprefix("proto/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_git("show", f"{commit}:{name}"))
    stubs.mkdir()
    include = resources.files("grpc_tools") / "_proto"
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    args = [f"-I{protos}", f"-I{include}", f"--python_out={stubs}", f"--grpc_python_out={stubs}"]
    assert protoc.main(["protoc", *args, *files]) == 0
    for package in (stubs / "fedpeer", stubs / "fedpeer" / "v1"):
        (package / "__init__.py").touch()
    return stubs


async def run_old_agent(stubs: Path, address: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``OLD_AGENT`` against ``address`` with the enrolled agent in ``home``."""
    # Only the old stubs and grpc: not this checkout's fedpeer package.
    env = {**os.environ, "PYTHONPATH": str(stubs)}
    # In a thread: the coordinator serves on this test's event loop meanwhile.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", OLD_AGENT, address]
        + [str(home / n) for n in ("ca.crt", "agent.key", "agent.crt")],
        capture_output=True,
        text=True,
        cwd=home.parent,
        env=env,
        timeout=120,
    )


async def test_an_agent_on_the_first_v1_stubs_is_served_and_told_what_to_upgrade(
    tmp_path: Path,
) -> None:
    stubs = _old_stubs(EARLIER[0], tmp_path)
    running = await start(tmp_path / "coordinator")
    try:
        async with admin(running) as adm:
            token, _ = await adm.invite("OLD1", "Old Mill", "East")
            # A round with a deadline and a quorum (fields the old stubs do not know).
            deadline = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
            round_ = await adm.start_round(AS_OF, DEFINITIONS, deadline, quorum=5)
        home = tmp_path / "agent"
        await enrol(running.address, running.enrol_port, token, home)
        result = await run_old_agent(stubs, running.address, home)
    finally:
        await running.stop(0)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert Path(out["stubs"]).is_relative_to(stubs)  # the old stubs, not today's
    assert out["rounds"] == [round_.round_id]
    assert out["round"] == [round_.round_id, AS_OF.isoformat(), [d.id for d in DEFINITIONS]]
    code, details = out["submit"]
    assert code in ("FAILED_PRECONDITION", "INVALID_ARGUMENT")
    assert "upgrade" in details
