"""Benchmark: a study through the coordinator's own code, at 50, 200 and 1,000 practices.

    .venv/bin/python bench/study.py [--practices 50 200 1000] [--dropout 0.2]

Each simulated practice is a ``fedpeer.secagg.Party`` with its own key and certificate
from a fresh CA, sending signed steps for a study of the twelve standard indicators;
the coordinator side is ``coordinator.studies`` on a SQLite store: every step is
verified, checked and stored, every stage's documents are built, and the result is
reconstructed, checked against the plain sum, and published. gRPC itself is left out
(``bytes`` counts each step's message and signature and each stage document, as they
would travel). The ``--dropout`` share of practices vanishes after sending its shares.

It prints, per size: the coordinator's time per stage (all steps and documents of
that stage), the time from the last practice's unmasking step to the published result,
the bytes in and out per practice, and the coordinator's peak traced memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from coordinator import studies  # noqa: E402
from coordinator.store import Store  # noqa: E402
from coordinator.studies import SignedStep, StudyBook  # noqa: E402
from coordinator.tables import practices  # noqa: E402
from fedpeer.collection import DefinitionDocument, decode_rows, encode_rows  # noqa: E402
from fedpeer.definitions import load_standard_set, serialize  # noqa: E402
from fedpeer.disclosure import release  # noqa: E402
from fedpeer.identity import (  # noqa: E402
    CertificateAuthority,
    cert_to_pem,
    generate_key,
    make_csr,
)
from fedpeer.measures import (  # noqa: E402
    Breakdown,
    Count,
    IndicatorResult,
    Kind,
    Mean,
    Proportion,
    Rate,
)
from fedpeer.policy import DisclosurePolicy  # noqa: E402
from fedpeer.release import to_rows  # noqa: E402
from fedpeer.secagg import Party, PublicKeys  # noqa: E402
from fedpeer.signing import sign_bytes  # noqa: E402
from fedpeer.studies import (  # noqa: E402
    Stage,
    Step,
    atoms,
    b64,
    from_vector,
    survivors_digest,
    threshold,
    to_vector,
    unb64,
    vector_length,
)

AS_OF = dt.date(2026, 9, 30)


class Practice:
    """A simulated practice: a key, a certificate, a Party, a random count vector."""

    def __init__(self, ca: CertificateAuthority, practice_id: str, definitions, rng) -> None:  # type: ignore[no-untyped-def]
        self.id = practice_id
        self.key = generate_key()
        self.cert = ca.issue_practice(make_csr(self.key), practice_id)
        self.vector = to_vector(definitions, [_raw(d, rng) for d in definitions])
        self.party: Party | None = None

    def step(self, study_id: str, stage: str, body: dict) -> SignedStep:  # type: ignore[type-arg]
        message = Step(study_id, self.id, stage, body).to_bytes()
        return SignedStep(message, sign_bytes(self.key, message))


def _raw(d, rng) -> IndicatorResult:  # type: ignore[no-untyped-def]
    """A plausible raw result of one definition for one practice."""
    den = int(rng.integers(200, 6000))
    if d.kind in (Kind.PROPORTION, Kind.RATE):
        measure = (Proportion if d.kind is Kind.PROPORTION else Rate)(
            int(rng.integers(0, den)), den
        )
    elif d.kind is Kind.COUNT:
        measure = Count(den)
    elif d.kind is Kind.MEAN:
        measure = Mean(den, float(rng.uniform(0, 1)))
    else:
        names = atoms(d)[:-1]
        cells = tuple((n.split(":cell:")[1], int(rng.integers(0, 400))) for n in names)
        measure = Breakdown(cells, sum(c for _, c in cells) + int(rng.integers(0, 5)))
    return IndicatorResult(d.id, measure)


def run(size: int, dropout: float) -> dict[str, float]:
    rng = np.random.default_rng(size)
    ca = CertificateAuthority.create()
    definitions = load_standard_set()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "coordinator.sqlite")
        book = StudyBook(store, DisclosurePolicy())
        sims = [Practice(ca, f"P{k:04d}", definitions, rng) for k in range(size)]
        now = dt.datetime.now(dt.UTC)
        with store.engine.begin() as conn:
            conn.execute(
                practices.insert(),
                [
                    {"practice_id": p.id, "name": p.id, "locality": "X", "revoked": False}
                    for p in sims
                ],
            )
        record = studies.create_study(
            book,
            ca.issue_signer(),
            owner="bench",
            title="Twelve indicators",
            purpose="Benchmark",
            as_of=AS_OF,
            min_practices=10,
            definitions=[DefinitionDocument.of(d.id, serialize(d)) for d in definitions],
            now=now,
        )
        study_id = record.study.study_id
        studies.open_study(book, study_id, now)
        for p in sims:
            studies.post_step(book, p.id, p.cert, study_id, p.step(study_id, "join", {}), now, 60)
        studies.close_study(book, study_id, now)
        t = threshold(size, 10)
        stayers = sims[: size - int(size * dropout)]
        figures: dict[str, float] = {"in": 0.0, "out": 0.0}
        coordinator = 0.0

        def post(p: Practice, stage: str, body: dict) -> None:  # type: ignore[type-arg]
            nonlocal coordinator
            signed = p.step(study_id, stage, body)
            figures["in"] += len(signed.message) + len(signed.signature)
            t0 = time.perf_counter()
            studies.post_step(book, p.id, p.cert, study_id, signed, now, 60)
            elapsed = time.perf_counter() - t0
            coordinator += elapsed
            # the last unmasking step completes the stage: its call includes publishing
            figures["last step to published"] = elapsed

        def document(p: Practice) -> dict:  # type: ignore[type-arg]
            nonlocal coordinator
            t0 = time.perf_counter()
            _, data = studies.step_document(book, study_id, p.id)
            coordinator += time.perf_counter() - t0
            figures["out"] += len(data)
            return json.loads(data)

        tracemalloc.start()
        stage_times = {}
        for stage in Stage:
            before = coordinator
            group = sims if stage in (Stage.KEYS, Stage.SHARES) else stayers
            if stage is Stage.MASKED:
                # the dropouts vanish now: the stage moves on when its time is up
                for p in group:
                    doc = document(p)
                    inbox = {s: unb64(c, "share") for s, c in doc["inbox"].items()}
                    post(p, stage.value, {"masked": b64(p.party.masked_input(inbox, p.vector))})  # type: ignore[union-attr]
                t0 = time.perf_counter()
                studies.advance(book, study_id, now + dt.timedelta(seconds=61), 60)
                coordinator += time.perf_counter() - t0
                stage_times[stage.value] = coordinator - before
                continue
            for p in group:
                doc = document(p)
                if stage is Stage.KEYS:
                    p.party = Party(p.id, study_id, t)
                    body = {
                        "keys": b64(p.party.public_keys().to_bytes()),
                        "certificate": cert_to_pem(p.cert).decode("ascii"),
                    }
                elif stage is Stage.SHARES:
                    roster = [
                        PublicKeys.from_bytes(
                            unb64(Step.from_bytes(unb64(e["message"], "m")).body["keys"], "k")
                        )
                        for e in doc["roster"]
                    ]
                    shares = p.party.encrypted_shares(roster)  # type: ignore[union-attr]
                    body = {"shares": {q: b64(c) for q, c in sorted(shares.items())}}
                elif stage is Stage.CONSISTENCY:
                    body = {"survivors_sha256": survivors_digest(doc["survivors"])}
                else:
                    shares = p.party.unmasking_shares(doc["survivors"])  # type: ignore[union-attr]
                    body = {"shares": {q: b64(s) for q, s in sorted(shares.items())}}
                post(p, stage.value, body)
            stage_times[stage.value] = coordinator - before
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        final = book.get(study_id)
        assert final.state.value == "published", final.detail
        # The published rows are exactly the plain sum's, through the same disclosure control.
        plain = np.sum([p.vector for p in stayers], axis=0)
        pooled = release(from_vector(definitions, [int(v) for v in plain]), DisclosurePolicy())
        published = book.results(study_id)
        assert published is not None and decode_rows(published[0]) == decode_rows(
            encode_rows(to_rows(pooled))
        )
        figures.update({f"stage {k}": v for k, v in stage_times.items()})
        figures["coordinator total"] = coordinator
        figures["peak MiB"] = peak / 2**20
        figures["practices in sum"] = len(stayers)
        store.close()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--practices", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--dropout", type=float, default=0.2)
    args = parser.parse_args()
    print(
        f"{platform.machine()}, Python {platform.python_version()}; twelve indicators "
        f"({vector_length(load_standard_set())} numbers per practice); "
        f"{args.dropout:.0%} drop out after the shares stage"
    )
    for size in args.practices:
        t0 = time.perf_counter()
        f = run(size, args.dropout)
        wall = time.perf_counter() - t0
        stages = ", ".join(f"{k[6:]} {v:.2f}" for k, v in f.items() if k.startswith("stage "))
        print(
            f"{size:>5} practices ({int(f['practices in sum'])} in the sum): coordinator "
            f"{f['coordinator total']:.2f} s [{stages}]; last step to published "
            f"{f['last step to published']:.2f} s; per practice in "
            f"{f['in'] / size / 1024:.1f} KiB, out {f['out'] / size / 1024:.1f} KiB; "
            f"peak {f['peak MiB']:.0f} MiB traced; whole run {wall:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
