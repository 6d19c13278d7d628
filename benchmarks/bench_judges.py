"""Judge cost and agreement: CTRS in one call vs one call per item, on stored sessions.

    .venv/bin/python benchmarks/bench_judges.py --store results/therapygym.sqlite \\
        --run-id demo --judge local:smollm2 [--json out.json]

Judges every finished session of the run both ways (cached, so a rerun is free) and
reports prompt and completion tokens per judged session for each mode, and how far the
two modes agree item by item: exact agreement, agreement within one point, mean absolute
difference, and Spearman's rho over all (session, item) pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from scipy import stats

from therapygym.judges.ctrs import CTRSJudge
from therapygym.judges.rubric import builtin_rubric
from therapygym.models import ResponseCache, load_model
from therapygym.records import FINISHED
from therapygym.store import RunStore


async def judge_all(spec: str, store: RunStore, run_id: str, limit: int | None) -> dict[str, Any]:
    model = load_model(spec, cache=ResponseCache())
    sessions = [t for t in store.sessions(run_id) if t.status.value in FINISHED][:limit]
    out: dict[str, Any] = {}
    for mode in ("one_call", "per_item"):
        judge = CTRSJudge(model, builtin_rubric("ctrs"), mode=mode)  # type: ignore[arg-type]
        started = time.perf_counter()
        records = [r for t in sessions for r in await judge.score(t)]
        out[mode] = {
            "wall_s": time.perf_counter() - started,
            "sessions": len(sessions),
            "failed": sum(r.error is not None for r in records),
            "prompt_tokens_per_session": statistics.fmean(r.prompt_tokens for r in records),
            "completion_tokens_per_session": statistics.fmean(r.completion_tokens for r in records),
            "scores": {
                r.session_id: {
                    k: v["score"] for k, v in (r.result or {"items": {}})["items"].items()
                }
                for r in records
            },
        }
    await model.aclose()
    return out


def agreement(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, float]:
    pairs = [(a[s][item], b[s][item]) for s in a if s in b for item in a[s] if item in b[s]]
    if not pairs:
        return {"pairs": 0}
    x, y = zip(*pairs, strict=True)
    rho = stats.spearmanr(x, y).statistic if len(set(x)) > 1 and len(set(y)) > 1 else float("nan")
    return {
        "pairs": len(pairs),
        "exact": sum(i == j for i, j in pairs) / len(pairs),
        "within_1": sum(abs(i - j) <= 1 for i, j in pairs) / len(pairs),
        "mean_abs_diff": statistics.fmean(abs(i - j) for i, j in pairs),
        "spearman_rho": float(rho),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("results/therapygym.sqlite"))
    parser.add_argument("--run-id", default="demo")
    parser.add_argument("--judge", default="local:smollm2")
    parser.add_argument("--limit", type=int, help="only the first N sessions")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(judge_all(args.judge, RunStore(args.store), args.run_id, args.limit))
    result["agreement"] = agreement(result["one_call"]["scores"], result["per_item"]["scores"])
    print(
        "| mode | sessions | failed | prompt tokens/session | completion tokens/session | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("one_call", "per_item"):
        r = result[mode]
        print(
            f"| {mode} | {r['sessions']} | {r['failed']} | {r['prompt_tokens_per_session']:.0f} | "
            f"{r['completion_tokens_per_session']:.0f} | {r['wall_s']:.0f} |"
        )
    print("\nagreement between modes:", json.dumps(result["agreement"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
