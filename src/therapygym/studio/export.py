"""A study's submitted ratings as `therapygym.bench/1` ratings, so that `calibrate --bench`
reads them unchanged and reward weights follow.

One `BenchRating` per rater and session (the session id is the dialogue id), with the
session's transcript, the CTRS scores under `ctrs`, the safety labels under `safety`
(true violated, false not, null not applicable), the rater's notes joined in `rationale`,
and in `meta` the study id, the rubric refs the ratings were made under
(`ctrs@2.0#<fingerprint>`), and per item the turns cited as evidence
(`evidence.ctrs:agenda` = "1,3", positions in the exported transcript). Tokens are never
read here: nothing of `study_raters` but names reaches an export.

The adjudicated consensus is exported as rater `consensus` with `rater_kind: "model"` and
`meta.consensus = true` (`meta.adjudicated_from` names the two raters). It is not an
independent human rating: the two raters reached it after seeing each other's scores, so
counted as a third expert it would agree with both by construction and raise the
human-human ceiling that `calibrate` reports. Every statistic of `calibrate` counts only
`rater_kind: "human"` lines as experts, so a non-human line keeps it out of the ceiling,
the judge-vs-expert comparisons and the reward weights; a reader who wants the consensus
as the reference selects the lines with `meta.consensus`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from therapygym.calibration.bench import BenchRating, BenchTurn
from therapygym.records import Transcript
from therapygym.studio.stored import CTRS_PREFIX, SAFETY_PREFIX, StoredRating

CONSENSUS_META = "consensus"


def bench_turns(transcript: Transcript) -> tuple[tuple[BenchTurn, ...], dict[str, int]]:
    """The session's turns as bench turns, and each turn id's position among them (a turn
    with no text, which a bench cannot hold, is left out and the positions follow)."""
    kept = [t for t in sorted(transcript.turns, key=lambda t: t.index) if t.text.strip()]
    turns = tuple(BenchTurn(speaker=t.speaker, text=t.text) for t in kept)
    return turns, {t.id: position for position, t in enumerate(kept)}


def bench_ratings(
    study_id: str,
    rows: Sequence[StoredRating],
    *,
    transcripts: Mapping[str, Transcript] | None = None,
    consensus_of: Mapping[str, tuple[str, ...]] | None = None,
) -> list[BenchRating]:
    """`rows` as bench ratings, one per rater and session that scored something, sessions
    in id order and raters in name order (the consensus after them). `transcripts`
    (by session id) adds each transcript and the evidence; `consensus_of` names, per
    session, the raters a `consensus` row was adjudicated from."""
    grouped: dict[tuple[str, str], list[StoredRating]] = {}
    for row in rows:
        grouped.setdefault((row.session_id, row.rater), []).append(row)
    out = []
    for (session_id, rater), mine in sorted(
        grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] == CONSENSUS_META, kv[0][1])
    ):
        scored = [r for r in mine if r.scored]
        if not scored:
            continue
        transcript = transcripts.get(session_id) if transcripts is not None else None
        turns, position = bench_turns(transcript) if transcript is not None else (None, {})
        meta: dict[str, str | int | float | bool | None] = {
            "study": study_id,
            "rubrics": ",".join(sorted({r.rubric_ref for r in scored})),
        }
        for r in sorted(mine, key=lambda r: r.item):
            cited = sorted(position[t] for t in r.evidence if t in position)
            if cited:
                meta[f"evidence.{r.item}"] = ",".join(map(str, cited))
        if rater == CONSENSUS_META:
            meta[CONSENSUS_META] = True
            meta["adjudicated_from"] = ",".join((consensus_of or {}).get(session_id, ()))
        notes = [f"{r.item}: {r.note}" for r in sorted(mine, key=lambda r: r.item) if r.note]
        out.append(
            BenchRating(
                dialogue_id=session_id,
                rater=rater,
                rater_kind="model" if rater == CONSENSUS_META else "human",
                transcript=turns or None,
                ctrs={
                    r.item.removeprefix(CTRS_PREFIX): r.value
                    for r in scored
                    if r.item.startswith(CTRS_PREFIX) and r.value is not None
                },
                safety={
                    r.item.removeprefix(SAFETY_PREFIX): None if r.na else bool(r.value)
                    for r in scored
                    if r.item.startswith(SAFETY_PREFIX)
                },
                rationale="\n".join(notes) or None,
                meta=meta,
            )
        )
    return out
