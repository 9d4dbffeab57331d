"""The analyst's client: a study's pooled results as a pandas DataFrame.

    from coordinator.study_client import StudyClient

    async with StudyClient.from_directory("analyst-dr-a", "coordinator.example:50051") as c:
        frame = await c.results("study-2026-09-30-1a2b3c4d")
    frame.to_csv("results.csv"); frame.to_parquet("results.parquet")

An analyst holds a certificate from the coordinator (``fedpeer-coordinator analyst add``)
naming them as studies name their owner; they can read the pooled results of their own
studies, never a single practice's values (nobody can: they are never stored).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from coordinator.admin_client import ServiceClient
from fedpeer.channel import secure_channel
from fedpeer.collection import decode_rows
from fedpeer.release import CSV_COLUMNS
from fedpeer.studies import Study
from fedpeer.v1 import admin_pb2, admin_pb2_grpc

KEY_FILE, CERT_FILE, CA_FILE = "analyst.key", "analyst.crt", "ca.crt"


def results_frame(message: admin_pb2.StudyResults) -> pd.DataFrame:
    """Pooled rows from the wire as a DataFrame (nullable integer counts)."""
    rows = [asdict(r) for r in decode_rows(message.rows)]
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    for name in ("numerator", "denominator", "count"):
        frame[name] = frame[name].astype("Int64")
    for name in ("mean", "value"):
        frame[name] = frame[name].astype("float64")
    frame.attrs.update(
        study_id=message.study_id, practices=message.practices, published_at=message.published_at
    )
    return frame


def export(frame: pd.DataFrame, path: Path) -> Path:
    """Write results to CSV or Parquet, chosen by the file's suffix."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path.name}: export to a .csv or .parquet file")
    return path


class StudyClient(ServiceClient):
    """Analyst calls over mutual TLS with an analyst (or admin) certificate."""

    def __init__(self, address: str, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        channel = secure_channel(address, ca_pem, key_pem, cert_pem)
        super().__init__(address, channel, admin_pb2_grpc.AnalystStub(channel))

    @classmethod
    def from_directory(cls, directory: str | Path, address: str) -> StudyClient:
        """A client from the folder ``fedpeer-coordinator analyst add`` wrote."""
        folder = Path(directory)
        missing = [n for n in (KEY_FILE, CERT_FILE, CA_FILE) if not (folder / n).exists()]
        if missing:
            raise FileNotFoundError(f"{folder}: no {missing[0]}: is this an analyst folder?")
        return cls(
            address,
            (folder / KEY_FILE).read_bytes(),
            (folder / CERT_FILE).read_bytes(),
            (folder / CA_FILE).read_bytes(),
        )

    async def studies(self) -> list[tuple[Study, str]]:
        """The caller's studies and their states."""
        response = await self._call("ListMyStudies", admin_pb2.ListStudiesAdminRequest())
        assert isinstance(response, admin_pb2.ListStudiesAdminResponse)
        return [(Study.from_bytes(s.study), s.state) for s in response.studies]

    async def results(self, study_id: str) -> pd.DataFrame:
        """A published study's pooled results."""
        response = await self._call("GetStudyResults", admin_pb2.StudyRequest(study_id=study_id))
        assert isinstance(response, admin_pb2.StudyResults)
        return results_frame(response)


def fetch_results(directory: str | Path, address: str, study_id: str) -> pd.DataFrame:
    """The pooled results of one study, for a script or a notebook."""

    async def run() -> pd.DataFrame:
        async with StudyClient.from_directory(directory, address) as client:
            return await client.results(study_id)

    return asyncio.run(run())
