"""Input files for the benchmarks: FullStory users as NDJSON (about 250 bytes a row) and as CSV.

Deterministic for a seed; written in one pass, so the 100k-row file is the first 100k rows of the
big one. Every row passes the tracker's local validation; `bad_email_every` rows carry an e-mail
without '@', which FullStory (and its simulator) refuse, so results have errors as well as imports.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CITIES = ("Brno", "Prague", "Lisbon", "Austin", "Osaka", "Nairobi", "Lima", "Oslo", "Perth", "Tallinn")
PLANS = ("free", "starter", "pro", "enterprise")
WORDS = ("alpha", "bravo", "delta", "kilo", "lima", "oscar", "romeo", "sierra", "tango", "zulu")
CSV_COLUMNS = (
    "uid",
    "display_name",
    "email",
    "plan",
    "city",
    "signup_date",
    "visits",
    "score",
    "newsletter",
    "referrer",
    "bio",
)


def user(index: int, rng: random.Random, *, bad_email: bool = False) -> dict[str, Any]:
    r = rng.random
    return {
        "uid": f"u{index:08d}",
        "display_name": f"User {index}",
        "email": f"user{index}.example.com" if bad_email else f"user{index}@example.com",
        "properties": {
            "plan": PLANS[int(r() * len(PLANS))],
            "city": CITIES[int(r() * len(CITIES))],
            "signup_date": f"20{15 + int(r() * 11)}-{1 + int(r() * 12):02d}-{1 + int(r() * 28):02d}",
            "visits": int(r() * 5_001),
            "score": round(r() * 100, 2),
            "newsletter": r() < 0.5,
            "referrer": f"campaign_{1 + int(r() * 300)}",
            "bio": " ".join(rng.choices(WORDS, k=6)),
        },
    }


def users(count: int, *, seed: int = 11, bad_email_every: int = 100) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for index in range(1, count + 1):
        yield user(index, rng, bad_email=bad_email_every > 0 and index % bad_email_every == 0)


def write_files(ndjson: dict[int, Path], csv_paths: dict[int, Path], *, seed: int = 11) -> dict[str, int]:
    """Write the first `n` users to `ndjson[n]` and `csv_paths[n]` for every n, in one pass; the CSV
    has one column per property (the tracker makes them string properties). Returns the file sizes."""
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    largest = max(*ndjson, *csv_paths)
    ends = {*ndjson, *csv_paths}
    json_out = {n: path.open("wb") for n, path in ndjson.items()}
    csv_out = {n: path.open("w", newline="", encoding="utf-8") for n, path in csv_paths.items()}
    try:
        writers = {n: csv.writer(handle) for n, handle in csv_out.items()}
        for writer in writers.values():
            writer.writerow(CSV_COLUMNS)
        lines: list[bytes] = []
        records: list[list[Any]] = []
        for index, row in enumerate(users(largest, seed=seed), 1):
            lines.append(encode(row).encode() + b"\n")
            props = row["properties"]
            records.append([row["uid"], row["display_name"], row["email"], *(props[c] for c in CSV_COLUMNS[3:])])
            if len(lines) == 10_000 or index in ends:  # a chunk never straddles a file's end
                data = b"".join(lines)
                for n, handle in json_out.items():
                    if index <= n:
                        handle.write(data)
                for n, writer in writers.items():
                    if index <= n:
                        writer.writerows(records)
                lines, records = [], []
    finally:
        for handle in (*json_out.values(), *csv_out.values()):
            handle.close()
    return {str(path): path.stat().st_size for path in (*ndjson.values(), *csv_paths.values())}
