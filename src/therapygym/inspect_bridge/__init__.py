"""The Inspect AI bridge: therapygym's sessions and judges as an Inspect task, and a
stored run as an Inspect log.

- `inspect eval therapygym/ctrs_session --model openai/gpt-4o`: each sample is a patient
  profile; the model under evaluation sits in the therapist's seat of our `Session`, our
  simulator plays the patient, and our CTRS and safety judges score the transcript
  (`tasks.py`, `solver.py`, `scorers.py`). Inspect finds the task through the
  `inspect_ai` entry point, which names `_registry.py`.
- `therapygym runs export RUN --format inspect -o run.eval`: a run of the store as a log
  that `inspect view` and `inspect_ai.log.read_eval_log` open (`log.py`).

Inspect is an optional dependency (`pip install 'therapygym[inspect]'`). Only `log.py` is
imported without it (the export registry lists the format); it imports Inspect when the
format is used. Nothing else of ours imports this package (docs/inspect.md).
"""
