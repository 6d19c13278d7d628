"""20 raters, each with their own login and cookie, rating at once over real HTTP against a
studio on 127.0.0.1 for a minute (`STUDIO_LOAD_SECONDS` shortens it when trying things
out). Each rater works in two tabs (two logins), one scoring CTRS items and one answering
safety labels of the same sessions, and every tenth change is sent twice at the same moment
(a double submit). Afterwards the store holds exactly one row per (rater, session, item)
sent, with the last value the server acknowledged, and SQLite's integrity check passes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from studio_http import CSRF, ITEMS, LABELS, REF, build_store, make_study

from therapygym.studio.server import StudioServer

RATERS = tuple(f"rater{i:02d}" for i in range(20))
SECONDS = float(os.environ.get("STUDIO_LOAD_SECONDS", "60"))
TURNS = 6  # the transcripts of studio_http.build_store


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (rater, ref, item) -> the (value, na, evidence) of the last acknowledged change
    acknowledged: dict[tuple[str, str, str], tuple[int | None, bool, str]] = field(
        default_factory=dict
    )


def change(rng: random.Random, tab: int) -> dict[str, object]:
    """Tab 0 scores CTRS items, tab 1 answers safety labels (so each key has one writer
    whose order is known, and the two tabs still write the same sessions at once)."""
    if tab == 0:
        return {"item": rng.choice(ITEMS), "value": rng.randint(0, 6)}
    value = rng.choice([0, 1, None])
    return {"item": rng.choice(LABELS), "value": value, "na": value is None}


async def tab(
    base: str, name: str, token: str, until: float, seed: int, which: int, tally: Tally
) -> None:
    rng = random.Random(seed * 2 + which)
    jar = aiohttp.CookieJar(unsafe=True)  # cookies from an IP address (127.0.0.1)
    async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
        async with http.post("/s/pilot/login", json={"token": token}) as r:
            assert r.status == 200, await r.text()
        async with http.get("/s/pilot/") as r:
            home = await r.text()
        found = CSRF.search(home)
        assert found is not None
        headers = {"X-CSRF-Token": found.group(1)}
        refs = REF.findall(home)
        assert refs, f"{name} has no assignment"

        async def send(ref: str, body: dict[str, object]) -> int:
            start = time.perf_counter()
            async with http.post(f"/s/pilot/api/a/{ref}", json=body, headers=headers) as r:
                await r.read()
                tally.latencies.append(time.perf_counter() - start)
                if r.status != 200:
                    tally.errors.append(f"{name}: {r.status} {await r.text()}")
                return r.status

        n = 0
        while time.monotonic() < until:
            ref = rng.choice(refs)
            body = change(rng, which) | {"evidence": sorted(rng.sample(range(1, TURNS + 1), 2))}
            n += 1
            times = 2 if n % 10 == 0 else 1
            statuses = await asyncio.gather(*(send(ref, body) for _ in range(times)))
            if all(s == 200 for s in statuses):
                key = (name, ref, str(body["item"]))
                value = body["value"]
                assert value is None or isinstance(value, int)
                evidence = " ".join(map(str, body["evidence"]))  # type: ignore[call-overload]
                tally.acknowledged[key] = (value, bool(body.get("na")), evidence)


@pytest.mark.slow
async def test_twenty_raters_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    build_store(path, samples=5)  # 20 sessions
    created = make_study(path, RATERS, double=0.5)
    tally = Tally()
    with StudioServer(path) as server:
        base = server.url.rstrip("/")
        start = time.monotonic()
        until = start + SECONDS
        await asyncio.gather(
            *(
                tab(base, r, created.tokens[r], until, i, which, tally)
                for i, r in enumerate(RATERS)
                for which in (0, 1)
            )
        )
        elapsed = time.monotonic() - start

    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT rater, session_id, item, value, na, evidence FROM study_ratings"
        ).fetchall()
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        turn_numbers = {
            turn_id: idx + 1 for turn_id, idx in db.execute("SELECT turn_id, idx FROM turns")
        }
    stored = {
        (r, server.ref("pilot", s), item): (
            value,
            bool(na),
            " ".join(str(turn_numbers[t]) for t in json.loads(evidence)),
        )
        for r, s, item, value, na, evidence in rows
    }
    lat = sorted(tally.latencies)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(
        f"\nstudio load: {len(RATERS)} raters (two tabs each) for {elapsed:.0f} s: "
        f"{len(lat)} requests "
        f"({len(lat) / elapsed:.0f}/s), {len(tally.acknowledged)} distinct ratings sent, "
        f"{len(rows)} rows stored, p50 {statistics.median(lat) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, {len(tally.errors)} errors"
    )
    assert tally.errors == []
    assert len(rows) == len(stored) == len(tally.acknowledged)
    assert stored == tally.acknowledged
    assert integrity == "ok"
