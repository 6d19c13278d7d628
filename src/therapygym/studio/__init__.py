"""The rating studio: clinicians rate stored sessions, blind, in the browser, and their
ratings become a `therapygym.bench/1` bench that calibrates the judges.

The data layer (study.py, ratings.py, agreement.py, export.py) keeps studies in the run
store's study tables (store.py, schema 4); the web layer (server.py, templates/, static/)
calls only the API below. Nothing below this package imports it; the CLI imports it inside
its commands.

API (the server holds one `Studio`; every method is safe to call from several threads):

study.py
  StudyPlan(study_id, runs, rubrics=("ctrs", "safety"), raters, double=0.0, seed=0,
            n=None, practice=None, practice_n=3)        pydantic; one-line errors
  create_study(store: RunStore, plan: StudyPlan) -> CreatedStudy
  CreatedStudy(study_id, tokens: dict[rater, token], admin_token, sessions: int,
               double: int, practice: int, strata: dict[str, int])
                                                        the ONLY place tokens are in clear
  login_link(host, port, study_id, token) -> "http://HOST:PORT/s/STUDY/login#token=TOKEN"
  hash_token(token) -> sha256 hex (what study_raters.token_hash holds)
  StudyError; RATER_NAME, STUDY_NAME (regexes for re.fullmatch);
  ADMIN = "admin", CONSENSUS = "consensus" (reserved rater names)
ratings.py
  Studio(store_path: Path | str)                         opens (and migrates) the store
  .studies() -> list[str]
  .study(study_id) -> StudyInfo(study_id, created_at, rubrics: list[str] refs "ctrs@2.0",
                                raters: list[str], double, seed, n_sessions, n_double,
                                practice_sessions)
  .authenticate(study_id, token) -> RaterIdentity(study_id, rater, is_admin) | None
        (None for an unknown study or token, or a revoked one; hashes compared in
        constant time; the admin's identity has rater "admin" and is_admin True)
  .assignments(study_id, rater) -> list[AssignmentView]   position order, practice first
        AssignmentView(session_id, position, phase "practice"|"study",
                       state "open"|"submitted"|"skipped", flagged, submitted_at,
                       rated: int (items with a value or n/a), items: int)
  .progress(study_id) -> list[Progress]                   per rater, name order
        Progress(rater, done (submitted or skipped), assigned, flagged, revoked)
  .session_for(study_id, rater, session_id) -> BlindSession   raises NotAssigned
        BlindSession(study_id, session_id, phase, state, flagged,
                     turns: list[BlindTurn(id, index, speaker, text)],
                     rubrics: list[RubricView])
        -- no therapist, model, run id, profile id or patient label anywhere in it
        RubricView(ref "ctrs@2.0", kind "ctrs"|"safety", title, instructions,
                   items: list[ItemView])
        ItemView(key "ctrs:agenda"|"safety:crisis_unaddressed", kind, id, name,
                 description (a CTRS item's description, a safety label's definition),
                 scale (0, 6) for CTRS | None for safety, anchors {0,2,4,6: text} (CTRS;
                 {} for safety), guidance (CTRS text-session guidance), scope_note
                 (ctrs@2.0), positive_examples, negative_examples (safety; [] for CTRS),
                 allows_na (safety only))
  .ratings(study_id, rater, session_id) -> dict[item_key, RatingValue]   raises NotAssigned
        RatingValue(value: int | None, na: bool, evidence: list[turn_id],
                    note: str | None, rubric_ref "ctrs@2.0#<12 hex>", updated_at)
  .save_rating(study_id, rater, session_id, item, value, evidence=(), note=None,
               *, na=False) -> RatingValue
        one transaction, UPSERT on (study, rater, session, item); value None and na
        False clears the score (evidence and note kept); na=True (value None) is
        "not applicable", safety labels only. Raises NotAssigned (not this rater's) or
        RatingError (unknown item, value out of range, evidence turn not in the session,
        note too long, assignment not open); nothing is written then.
  .submit(study_id, rater, session_id)        open -> submitted (final); raises
        IncompleteRating unless every item has an answer (missing_items; "not
        applicable" counts), and then nothing changes
  .skip(study_id, rater, session_id)          open -> skipped
  .reopen(study_id, rater, session_id)        skipped -> open
  .flag(study_id, rater, session_id, flagged: bool)     any state
  .reference(study_id, rater, session_id) -> list[ReferenceRating] | None
        practice sessions only, and only once this rater submitted it; else None
        ReferenceRating(rater, values: dict[item_key, int | "na"] (0-6, 1 / 0, or "na"))
  .adjudications(study_id) -> list[AdjudicationSummary]
        AdjudicationSummary(session_id, raters (a, b), ready: bool (both submitted),
                            differing: int | None, consensus_items: int)
  .adjudication(study_id, session_id) -> AdjudicationView | None
        None until both raters submitted (raises StudyError for a session that is not
        double-rated). AdjudicationView(session: BlindSession, raters (a, b),
        items: list[AdjudicatedItem(key, values {rater: RatingValue | None},
        differs: bool (CTRS |a - b| >= 2; safety: verdicts differ), consensus:
        RatingValue | None)])
  .save_consensus(study_id, session_id, item, value, evidence=(), note=None,
                  *, na=False) -> RatingValue     rater "consensus"; only when ready
  .agreement(study_id, settings=None) -> AgreementView   (agreement.py; default
        LIVE_SETTINGS = 200 resamples: calibrate's report takes ~13 s at 200 on a 40-session,
        3-rater study, 68 s at 1000; cached until the store changes)
        AgreementView(report: CalibrationReport | None (calibrate --humans-only on
                      the submitted study ratings; None before any), raters:
                      list[RaterDistance], sessions_rated, double_rated, notes)
        RaterDistance(rater, n_sessions (shared with another rater), ctrs_abs:
                      Estimate (mean |mine - others'| over CTRS items, per session),
                      ctrs_bias: Estimate (mine - others'), items: dict[item_key,
                      Estimate] (CTRS: mean abs difference; safety: disagreement rate))
  .revoke(study_id, rater)                    the token stops working at once
  .export(study_id) -> list[BenchRating]      (export.py)
  .close()
  missing_items(items: Iterable[item_key], ratings: Mapping[item_key, RatingValue])
        -> list[item_key]     the items (in their order) with no answer yet: a CTRS item
        without a score, a safety label neither violated, not violated nor n/a; the one
        rule for submit and the rating page's count
errors (all TherapygymError, one line each): StudyError (study.py: unknown study, ...),
NotAssigned(StudyError) (a session not assigned to that rater, or the rater revoked:
answer 403/404), RatingError(StudyError) (bad input or a closed assignment: 400/409),
IncompleteRating(RatingError) (a submit with items unanswered; `.missing`: their keys, in
rubric order); nothing is written when one is raised.
stored.py: StoredRating (a study_ratings row, for agreement.py and export.py)
"""
