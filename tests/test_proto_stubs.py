"""The committed gRPC stubs match the protos, and the check notices when they do not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedpeer import protogen


def test_committed_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fedpeer.protogen", "--check"],
        capture_output=True,
        text=True,
        cwd=protogen.ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_check_detects_a_stale_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(protogen.STUB_DIR, copy)
    stale = copy / "agent_pb2.pyi"
    stale.write_text(stale.read_text() + "\n# edited by hand\n")
    (copy / "agent_pb2_grpc.py").unlink()
    monkeypatch.setattr(protogen, "STUB_DIR", copy)
    assert protogen.stale_stubs() == ["agent_pb2.pyi", "agent_pb2_grpc.py"]
    assert protogen.main(["--check"]) == 1


def test_generated_imports_read_as_documented() -> None:
    from fedpeer.v1 import admin_pb2, agent_pb2, common_pb2, enrolment_pb2

    row = common_pb2.ResultRow(indicator="x")
    assert not row.HasField("numerator")  # proto3 optional keeps "absent" apart from 0
    assert agent_pb2.SubmitRequest.DESCRIPTOR.full_name == "fedpeer.v1.SubmitRequest"
    assert admin_pb2.DESCRIPTOR.package == enrolment_pb2.DESCRIPTOR.package == "fedpeer.v1"
