"""Benchmark: what secure aggregation (fedpeer.secagg) costs a practice and the coordinator.

    PYTHONPATH=. .venv/bin/python bench/secagg.py [--parties 50 200 1000] [--length 40]
                                                  [--dropout 0.2]

For each roster size n it runs one whole session in this process, with the threshold
floor(2n/3) + 1: every party completes round 1, a fraction ``--dropout`` of them then drops
(shares sent, no masked input) and the survivors finish. It prints:
  * the mean client time per party of each round (round 1 over all parties, rounds 2 and 3
    over the survivors);
  * the coordinator's time: building the Aggregator, add_masked, add_unmasking and result;
  * the bytes a survivor sends and receives on average: the encoded messages (its public
    keys, ciphertexts, masked vector and unmasking shares out; the roster's public keys and
    its inbox of ciphertexts in), without party ids, the survivor list or any framing;
  * the total of those bytes through the coordinator, all parties together;
  * the coordinator's peak memory (tracemalloc), from a second, untimed run of the same
    coordinator work, since tracing slows Python down.
Each session's result is checked against the plain sum.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cryptography
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fedpeer.secagg import Aggregator, Party, PublicKeys

SESSION = "bench-session"
T = TypeVar("T")


@dataclass
class Messages:
    """Everything the parties sent, as the coordinator would hold it."""

    roster: list[PublicKeys]
    ciphertexts: dict[str, dict[str, bytes]]  # sender -> receiver -> ciphertext
    masked: dict[str, bytes]  # survivor -> masked vector
    unmasking: dict[str, dict[str, bytes]]  # survivor -> party -> share


def _timed(fn: Callable[[], T], times: list[float]) -> T:
    start = time.perf_counter()
    value = fn()
    times.append(time.perf_counter() - start)
    return value


def _inbox(ciphertexts: Mapping[str, Mapping[str, bytes]], receiver: str) -> dict[str, bytes]:
    return {sender: cts[receiver] for sender, cts in ciphertexts.items() if receiver in cts}


def _coordinate(messages: Messages, threshold: int, length: int) -> list[int]:
    """The coordinator's whole part, from the messages it received."""
    aggregator = Aggregator(SESSION, threshold, messages.roster, length)
    for party, data in messages.masked.items():
        aggregator.add_masked(party, data)
    for sender, shares in messages.unmasking.items():
        aggregator.add_unmasking(sender, shares)
    return aggregator.result()


def _traffic(messages: Messages) -> dict[str, tuple[int, int]]:
    """What each party sends and receives, in bytes of encoded messages."""
    keys = {entry.party: len(entry.to_bytes()) for entry in messages.roster}
    traffic = {}
    for party, own_keys in keys.items():
        sent = own_keys + sum(len(ct) for ct in messages.ciphertexts.get(party, {}).values())
        sent += len(messages.masked.get(party, b""))
        sent += sum(len(share) for share in messages.unmasking.get(party, {}).values())
        received = sum(keys.values())
        received += sum(len(ct) for ct in _inbox(messages.ciphertexts, party).values())
        traffic[party] = (sent, received)
    return traffic


def run(n: int, length: int, dropout: float) -> dict[str, float]:
    threshold = 2 * n // 3 + 1
    rng = random.Random(n)
    names = [f"gp{k:04d}" for k in range(n)]
    vectors = {name: [rng.randrange(0, 10_000) for _ in range(length)] for name in names}
    dropped = set(rng.sample(names, round(dropout * n)))
    parties = {name: Party(name, SESSION, threshold) for name in names}
    roster = [party.public_keys() for party in parties.values()]
    messages = Messages(roster, {}, {}, {})
    times: dict[int, list[float]] = {1: [], 2: [], 3: []}

    for name, party in parties.items():
        messages.ciphertexts[name] = _timed(lambda p=party: p.encrypted_shares(roster), times[1])
    survivors = [name for name in names if name not in dropped]
    for name in survivors:
        inbox = _inbox(messages.ciphertexts, name)
        messages.masked[name] = _timed(
            lambda p=parties[name], i=inbox: p.masked_input(i, vectors[p.party]), times[2]
        )
    for name in survivors:
        messages.unmasking[name] = _timed(
            lambda p=parties[name]: p.unmasking_shares(survivors), times[3]
        )

    start = time.perf_counter()
    result = _coordinate(messages, threshold, length)
    coordinator_seconds = time.perf_counter() - start
    expected = [sum(vectors[name][i] for name in survivors) for i in range(length)]
    if result != expected:
        raise SystemExit(f"n={n}: the secure sum differs from the plain sum")

    tracemalloc.start()
    _coordinate(messages, threshold, length)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    traffic = _traffic(messages)
    by_survivor = [traffic[name] for name in survivors]
    return {
        "n": n,
        "t": threshold,
        "survivors": len(survivors),
        "round1_ms": 1000 * statistics.mean(times[1]),
        "round2_ms": 1000 * statistics.mean(times[2]),
        "round3_ms": 1000 * statistics.mean(times[3]),
        "coordinator_s": coordinator_seconds,
        "sent_kb": statistics.mean(sent for sent, _ in by_survivor) / 1000,
        "received_kb": statistics.mean(received for _, received in by_survivor) / 1000,
        "through_mb": sum(sent + received for sent, received in traffic.values()) / 1e6,
        "peak_mb": peak / 1e6,
    }


COLUMNS = [  # key, heading, format; each column as wide as its heading
    ("n", "parties", "d"),
    ("t", "threshold", "d"),
    ("survivors", "survivors", "d"),
    ("round1_ms", "round 1 ms", ".1f"),
    ("round2_ms", "round 2 ms", ".1f"),
    ("round3_ms", "round 3 ms", ".2f"),
    ("coordinator_s", "coordinator s", ".2f"),
    ("sent_kb", "sent kB", ".1f"),
    ("received_kb", "received kB", ".1f"),
    ("through_mb", "via coordinator MB", ".1f"),
    ("peak_mb", "coordinator peak MB", ".1f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parties", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--dropout", type=float, default=0.2)
    args = parser.parse_args()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}, numpy {np.__version__}; "
        f"vector length {args.length}, {args.dropout:.0%} drop after round 1; "
        f"client times are means per party, bytes are means per survivor"
    )
    print("  ".join(title for _, title, _ in COLUMNS), flush=True)
    for n in args.parties:
        row = run(n, args.length, args.dropout)
        cells = (f"{row[key]:>{len(title)}{spec}}" for key, title, spec in COLUMNS)
        print("  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
