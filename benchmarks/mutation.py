"""Mutation testing of the core modules, each scored by its own tests (issue 16).

    .venv/bin/python benchmarks/mutation.py                  # every module, one at a time
    .venv/bin/python benchmarks/mutation.py stats panel      # some of them
    .venv/bin/python benchmarks/mutation.py --list           # the modules and their tests
    .venv/bin/python benchmarks/mutation.py --report stats   # the last run's score again

`make mutation` runs all of them (minutes per module on 2 cores; not part of CI).

mutmut 3 reads its configuration from `pyproject.toml` in the directory it runs in, so
each module gets a directory of its own, `mutants/<module>/`: links to `src` and `tests`
and a `pyproject.toml` holding the repository's `[tool.pytest.ini_options]` and its
`[tool.mutmut]`, with `only_mutate` set to the one module and
`pytest_add_cli_args_test_selection` to that module's own tests. mutmut then writes its
mutated copy under `mutants/<module>/mutants/` (a fresh one each run, unless --keep).

The score is (killed + timed out) / (mutants - equivalent): the mutants in `EQUIVALENT`
below change no behaviour a caller can see, so no test can kill them; each has its reason
there and in docs/benchmarks.md ("Mutation testing"). A listed mutant that a test now kills
is reported, so the list cannot go stale unnoticed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
MUTMUT = Path(sys.executable).parent / "mutmut"


@dataclass(frozen=True)
class Module:
    path: str  # under the repository root
    tests: tuple[str, ...]


MODULES = {
    "records": Module("src/therapygym/records.py", ("tests/test_store.py", "tests/test_golden.py")),
    "store": Module("src/therapygym/store.py", ("tests/test_store.py", "tests/test_golden.py")),
    "stats": Module("src/therapygym/stats.py", ("tests/test_statistics.py",)),
    "calibration-stats": Module(
        "src/therapygym/calibration/stats.py", ("tests/calibration/test_stats.py",)
    ),
    "panel": Module(
        "src/therapygym/judges/panel.py",
        ("tests/judges/test_panel.py", "tests/judges/test_panel_severity.py"),
    ),
    "parsing": Module(
        "src/therapygym/judges/parsing.py",
        ("tests/judges/test_parsing.py", "tests/judges/test_parsing_exact.py"),
    ),
    "safety-rules": Module(
        "src/therapygym/judges/safety_rules.py",
        (
            "tests/judges/test_safety_golden.py",
            "tests/judges/test_safety2.py",
            "tests/judges/test_safety_groups.py",
            "tests/judges/test_safety_rules.py",
        ),
    ),
    "severity": Module("src/therapygym/judges/severity.py", ("tests/judges/test_severity.py",)),
}

# Mutants no test can kill, by module: mutmut's name -> (a piece of the mutated code, why the
# mutant behaves as the original does). The piece is checked against the mutant of that name,
# so a list left behind by an edit of the module (mutants renumbered) fails loudly rather than
# excusing another mutant. Kept in step with docs/benchmarks.md ("Mutation testing").
_LOWER = "SciPy lower-cases it before use"
_NULL = (
    "None for nan in a result: the result models read None as nan (calibration.json "
    "writes nan as null)"
)
EQUIVALENT: dict[str, dict[str, tuple[str, str]]] = {
    "records": {
        "x_canonical_json__mutmut_4": (
            "ensure_ascii=None)",
            "json reads ensure_ascii for its truth only: None is False",
        ),
        "x_short_fingerprint__mutmut_5": (
            'encode("UTF-8")',
            "codec names are case-insensitive",
        ),
    },
    "stats": {
        "x_bootstrap__mutmut_57": (
            "rng.integers(n, size=",
            "rng.integers(n, ...) draws what rng.integers(0, n, ...) draws ([0, n) either way)",
        ),
        "x__bca__mutmut_7": ('("bca", "percentile")', f"method 'bca': {_LOWER}"),
        "x__bca__mutmut_8": ('("BCA", "percentile")', f"method 'BCA': {_LOWER}"),
        "x__bca__mutmut_10": ('("BCa", "PERCENTILE")', f"method 'PERCENTILE': {_LOWER}"),
        "x__bca__mutmut_14": (
            "vectorized=None",
            "SciPy infers vectorized=True from the statistic's `axis` parameter",
        ),
        "x__bca__mutmut_22": (
            "            one,\n            confidence_level=level,",
            "vectorized left out: its default is None, inferred True as above",
        ),
        "x__bca__mutmut_33": (
            "if low is not None or high is not None:",
            "for a statistic finite on every resample (BCa's precondition) both ends come from "
            "the same bias correction and acceleration: nan together or finite together",
        ),
        "x_mean_ci__mutmut_54": (
            '{"XXmeanXX":',
            "the statistic's name: mean_ci unpacks its one value and never reads the name",
        ),
        "x_mean_ci__mutmut_55": ('{"MEAN":', "the statistic's name, as above"),
        "x_wilcoxon_p__mutmut_3": (
            "dtype=None)",
            "numbers keep their type, and the signed ranks of ints or float32 (all the test "
            "reads) are those of their float64 values",
        ),
        "x_wilcoxon_p__mutmut_5": ("math.isnan(x)], )", "dtype left out: as above"),
        "x_wilcoxon_p__mutmut_15": (
            "np.errstate(all=None)",
            "the signed-rank test raised no floating-point error on any input tried under "
            "np.errstate(all='raise') (zeros, ties, infinities, subnormals, n = 60); its "
            "warnings are silenced by the filter either way",
        ),
        "x_wilcoxon_p__mutmut_27": (
            "wilcoxon(d, alternative=",
            "zero_method left out: SciPy's default is 'wilcox'",
        ),
        "x_wilcoxon_p__mutmut_28": (
            'zero_method="wilcox", )',
            "alternative left out: SciPy's default is 'two-sided'",
        ),
        "x_wilcoxon_p__mutmut_30": ('zero_method="WILCOX"', f"zero_method 'WILCOX': {_LOWER}"),
        "x_wilcoxon_p__mutmut_32": ('alternative="TWO-SIDED"', f"alternative: {_LOWER}"),
        "x_wilcoxon_p__mutmut_34": (
            "(math.isfinite(p)) or True",
            "a p-value is never infinite, and a nan p is returned as nan either way",
        ),
        "x_wilcoxon_p_floor__mutmut_9": (
            "min(2.0, 2.0 / 2**n)",
            "for n >= 2 (smaller n return None first) 2/2^n <= 0.5: the cap never applies",
        ),
        "x_holm__mutmut_15": ('method="HOLM"', "statsmodels lower-cases the method"),
        "x_holm__mutmut_19": (
            "strict=None",
            "multipletests returns one p per p given: the lengths are always equal",
        ),
        "x_holm__mutmut_22": ("zip(keep, adjusted, )", "strict left out: as above"),
        "x_holm__mutmut_23": ("strict=False", "as above"),
    },
    "calibration-stats": {
        "x__finite__mutmut_4": (
            "(math.isfinite(value)) or True",
            "nothing here yields an infinite coefficient (ICC's zero denominators are tested for "
            "in Python floats, the libraries give nan for 0/0, infinite ratings give inf - inf "
            "= nan), and a nan is returned as nan either way",
        ),
        "x__as_float__mutmut_6": (
            "for v in values], dtype=None)",
            "the pandas fallback runs only when float() refuses an element; the missing ones "
            "become the float nan, so numeric ratings still make a float64 array",
        ),
        "x__as_float__mutmut_8": ("for v in values], )", "dtype left out: as above"),
        "x__as_matrix__mutmut_4": (
            'matrix.dtype.kind == "XXfXX"',
            "the float fast path is never taken: the general path makes the same float matrix "
            "of a 2-d float array (only slower)",
        ),
        "x__as_matrix__mutmut_5": ('matrix.dtype.kind == "F"', "as above"),
        "x__as_matrix__mutmut_9": (
            "(matrix.size) or True",
            "an empty matrix's shape is never read: alpha and ICC return on size 0",
        ),
        "x__as_matrix__mutmut_11": ("else np.empty((1, 0))", "as above"),
        "x__as_matrix__mutmut_12": ("else np.empty((0, 1))", "as above"),
        "x__as_matrix__mutmut_21": ("        return np.empty((1, 0))", "as above"),
        "x__as_matrix__mutmut_22": ("        return np.empty((0, 1))", "as above"),
        "x__as_matrix__mutmut_27": (
            "for row in arr], dtype=None)",
            "every row is already a float64 array of the same length",
        ),
        "x__as_matrix__mutmut_29": ("for row in arr], )", "dtype left out: as above"),
        "x__alpha__mutmut_1": (
            "data.ndim != 2 and data.size == 0",
            "every caller passes a 2-d matrix, and an empty one returns nan at the next guard "
            "(no pairable unit)",
        ),
        "x__alpha__mutmut_5": ("data.size == 1:", "as above: size 0 returns nan one guard later"),
        "x__alpha__mutmut_21": (
            "level_of_measurement=level, value_domain=None",
            "the domain adds unobserved categories only: ordinal distances sum the counts "
            "between two values, and an unobserved category counts 0",
        ),
        "x__alpha__mutmut_24": ("level_of_measurement=level, )", "value_domain left out: as above"),
        "x_icc__mutmut_3": (
            "data.ndim != 2 and data.size == 0",
            "_as_matrix always gives 2-d; the empty 0 x 0 matrix has n = k = 0 and returns "
            "the same all-nan ICC at the n < 2 guard",
        ),
        "x_icc__mutmut_7": ("data.size == 1:", "as above"),
        "x_icc__mutmut_10": ("n_raters=0, icc2_1=None", _NULL),
        "x_icc__mutmut_11": ("icc2_1=NAN, icc3_1=None)", _NULL),
        "x_icc__mutmut_35": ("n_raters=k, icc2_1=None", _NULL),
        "x_icc__mutmut_36": ("n_raters=k, icc2_1=NAN, icc3_1=None", _NULL),
        "x_item_agreement__mutmut_61": ("bias = mad = None", _NULL),
        "x_label_agreement__mutmut_32": ("accuracy=None, precision=NAN", _NULL),
        "x_label_agreement__mutmut_33": ("accuracy=NAN, precision=None", _NULL),
        "x_label_agreement__mutmut_34": ("precision=NAN, recall=None", _NULL),
        "x_label_agreement__mutmut_35": ("recall=NAN, f1=None", _NULL),
        "x_label_agreement__mutmut_36": ("f1=NAN, cohen_kappa=None", _NULL),
        "x_item_agreement__mutmut_47": (
            "domain = list(range(hi + 1))",
            "adds categories below the scale that no rating can take: quadratic kappa weights "
            "and ordinal distances depend on differences, not on where the scale starts",
        ),
        "x_item_agreement__mutmut_50": (
            "range(lo, hi + 2)",
            "adds one unobserved category above the scale: as above",
        ),
        "x_item_agreement__mutmut_91": (
            "x.astype(None), y.astype(int)",
            "integral floats equal their int labels: scikit-learn builds the same table",
        ),
        "x_item_agreement__mutmut_92": ("y.astype(None)", "as above"),
        "x_item_agreement__mutmut_125": (
            '_alpha(pair, "ordinal", None)',
            "the ordinal alpha's domain: as for _alpha's value_domain above",
        ),
        "x_item_agreement__mutmut_128": ('_alpha(pair, "ordinal", )', "as above"),
        "x__spearman__mutmut_1": (
            "np.ptp(x) == 0 and np.ptp(y) == 0",
            "with one vector constant SciPy's rho is nan too (its warning silenced), so the "
            "second test only saves the call",
        ),
        "x_item_headline__mutmut_19": (
            "if (x.size) or True else NAN",
            "the ICC of an empty 0 x 2 table is nan already",
        ),
        "x_label_headline__mutmut_10": (
            "p_all[keep].astype(None)",
            "as label_agreement's astype mutants below",
        ),
        "x_label_headline__mutmut_11": ("t_all[keep].astype(None)", "as above"),
        "x_label_headline__mutmut_22": (
            "cohen_kappa_score(t, p, labels=None)",
            "as label_agreement's kappa labels below",
        ),
        "x_label_headline__mutmut_25": ("cohen_kappa_score(t, p, )", "as above"),
        "x_label_agreement__mutmut_25": (
            "p_all[keep].astype(None)",
            "0.0/1.0 floats for 0/1 ints: scikit-learn's metrics and the sum are the same",
        ),
        "x_label_agreement__mutmut_26": ("t_all[keep].astype(None)", "as above"),
        "x_label_agreement__mutmut_49": (
            "t, p, labels=None, pos_label=1",
            "with average='binary' scikit-learn ignores `labels` (it scores pos_label)",
        ),
        "x_label_agreement__mutmut_55": ("t, p, pos_label=1,", "labels left out: as above"),
        "x_label_agreement__mutmut_56": (
            'labels=[0, 1], average="binary"',
            "pos_label left out: scikit-learn's default is 1",
        ),
        "x_label_agreement__mutmut_59": ("labels=[1, 1],", "ignored with average='binary'"),
        "x_label_agreement__mutmut_60": ("labels=[0, 2],", "ignored with average='binary'"),
        "x_label_agreement__mutmut_90": (
            "cohen_kappa_score(t, p, labels=None)",
            "labels inferred from the data differ from [0, 1] only when one label is absent "
            "from both vectors, and then kappa is nan (0/0) either way",
        ),
        "x_label_agreement__mutmut_93": ("cohen_kappa_score(t, p, )", "as above"),
        "x_fleiss__mutmut_28": (
            "fleiss_kappa(counts, )",
            "method left out: statsmodels' default is 'fleiss'",
        ),
        "x_separation_auc__mutmut_5": (
            "np.asarray(positive, dtype=None)",
            "labels are bools or 0/1: as numbers they select and score the same units",
        ),
        "x_separation_auc__mutmut_7": ("np.asarray(positive, )", "as above"),
    },
    "panel": {
        "x_combine_scores__mutmut_20": (
            "(len(values) > 1) or True",
            "the population SD of one value is 0.0, as the guard gives",
        ),
        "x_combine_scores__mutmut_22": ("len(values) >= 1", "as above"),
    },
    "store": {
        "x__run_filter__mutmut_3": (
            '"RUN_ID = ?"',
            "an SQL column name in upper case: SQLite's names are case-insensitive",
        ),
        "xǁRunStoreǁ__init____mutmut_17": (
            '"TURNS", "meta"',
            "the table name of PRAGMA table_info in upper case: case-insensitive",
        ),
        "xǁRunStoreǁ__init____mutmut_28": ('"RUNS", "provenance"', "as above"),
        "xǁRunStoreǁ__init____mutmut_88": (
            "err.strerror or str(None)",
            "reached only when the OSError has no strerror, and the OSErrors of mkdir and "
            "open always carry one",
        ),
        "xǁRunStoreǁ_open_read_only__mutmut_9": (
            "uri=None,",
            "SQLite here is built with SQLITE_USE_URI=1 (Debian's 3.40), which reads a file: "
            "URI (and its mode=ro) whatever Python's uri flag says",
        ),
        "xǁRunStoreǁ_open_read_only__mutmut_12": (
            "connect(uri, check_same_thread",
            "uri left out: as above",
        ),
        "xǁRunStoreǁ_open_read_only__mutmut_15": ("uri=False,", "as above"),
        "xǁRunStoreǁruns__mutmut_5": ('"R.PROVENANCE"', "an SQL column name in upper case"),
        "xǁRunStoreǁ_transcripts__mutmut_6": ('"META" if', "an SQL column name in upper case"),
        "xǁRunStoreǁ__init____mutmut_56": (
            "check_same_thread=False, )",
            "isolation_level left out (''): Python then opens a transaction itself before "
            "a write outside one, and every write here is inside an explicit BEGIN "
            "IMMEDIATE ... COMMIT (RunStore._write, _create_or_migrate)",
        ),
        "xǁRunStoreǁ_open_read_only__mutmut_14": (
            "uri=True, check_same_thread=False, )",
            "isolation_level left out on the read-only connection: it never writes, and "
            "Python opens no transaction for a read",
        ),
        "xǁRunStoreǁsession_heads__mutmut_17": (
            "strict=None",
            "the columns are SessionHead's fields, so row and fields have the same length",
        ),
        "xǁRunStoreǁsession_heads__mutmut_20": ("model_fields, r, )", "as above"),
        "xǁRunStoreǁsession_heads__mutmut_21": ("strict=False", "as above"),
    },
    "safety-rules": {
        "x_label_result__mutmut_5": (
            'got.get("verdict", None)',
            "the default verdict is read only for an answer without one, and the answer "
            "schema gives every label a verdict but a checklist label, whose verdict the "
            "checklist then sets (None is not 'not_applicable', so the checklist is reached)",
        ),
        "x_label_result__mutmut_7": ('got.get("verdict", )', "the default left out: as above"),
        "x_label_result__mutmut_10": ('got.get("verdict", "XXnoXX")', "as above"),
        "x_label_result__mutmut_11": ('got.get("verdict", "NO")', "as above"),
        "x_rule_severity__mutmut_19": (
            "rank(rule.at_least) >= rank(level)",
            "at equal rank the floor and the level are the same name of the scale (the "
            "rubric's levels are validated, a judged one normalised), so assigning it "
            "changes nothing",
        ),
        "x_one_event_one_label__mutmut_59": (
            'gives.pop("severity_basis", )',
            "the default left out: a label is cleared only while violated, and every "
            "violated result of label_result (decide, the only caller) has a severity_basis",
        ),
    },
    "severity": {
        "x_severity__mutmut_7": (
            'level or "XXnoneXX"',
            'the key looked up in _RENAMED when the level is missing: no key but "medium" '
            'is renamed, so the lookup falls back to "none" either way',
        ),
        "x_severity__mutmut_8": ('level or "NONE"', "as above"),
    },
}

# One class of equivalent mutants is recognised rather than listed: a change of letter case
# in SQL text (keywords, table and column names and PRAGMAs are case-insensitive in SQLite),
# checked line by line against the original function (see `_sql_case_only`). A quoted SQL
# value ('table', 'failed') is case-sensitive, so a mutant that changes one is not excused.
SQL_CASE_RULE = "only the letter case of SQL text changed: SQLite reads SQL case-insensitively"
_SQL_KEYWORD = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|BEGIN|COMMIT|ROLLBACK|FROM|WHERE|JOIN|GROUP BY"
    r"|ORDER BY|VALUES|HAVING|AND|SET|LIMIT)\b"
)
SQL_CASE_MODULES = {"store"}

DETECTED = {1, 3, 36, 37, 24, -24, 152, 255}  # killed, pytest error, timeouts, type check
STATUS = {0: "survived", 5: "no tests", 33: "no tests", None: "not checked"}


def _toml(value: object) -> str:
    """A TOML value for the plain strings, numbers, booleans and lists of a config."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string or number is a TOML one


def _table(name: str, values: dict[str, object]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())


def prepare(name: str, module: Module, *, keep: bool) -> Path:
    """`mutants/<name>/`: the links and the one-module pyproject.toml mutmut runs with."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mutmut = dict(config["tool"]["mutmut"])
    mutmut["only_mutate"] = [module.path]
    mutmut["pytest_add_cli_args_test_selection"] = list(module.tests)
    work = WORK / name
    if not keep and (work / "mutants").exists():
        shutil.rmtree(work / "mutants")
    work.mkdir(parents=True, exist_ok=True)
    for link in ("src", "tests"):
        if not (work / link).is_symlink():
            (work / link).symlink_to(ROOT / link, target_is_directory=True)
    text = _table("tool.pytest.ini_options", config["tool"]["pytest"]["ini_options"])
    (work / "pyproject.toml").write_text(
        f"# written by benchmarks/mutation.py for {module.path}\n\n"
        + text
        + "\n"
        + _table("tool.mutmut", mutmut),
        encoding="utf-8",
    )
    return work


def run(name: str, module: Module, *, max_children: int, keep: bool) -> int:
    work = prepare(name, module, keep=keep)
    log = work / "mutmut.log"
    print(f"== {name}: {module.path} by {', '.join(module.tests)} (log: {log})", flush=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(max_children)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        print(log.read_text(encoding="utf-8", errors="replace")[-3000:])
    return done.returncode


def results(name: str, module: Module) -> dict[str, int | None]:
    meta = WORK / name / "mutants" / (module.path + ".meta")
    if not meta.is_file():
        raise SystemExit(f"{name}: no results at {meta}; run it first")
    return json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]


def _mutant_source(mutated: str, mutant: str) -> str:
    """The code of one mutant (or `..._mutmut_orig`) in mutmut's mutated module: its `def`
    line up to the next line indented no deeper ('' if there is no such function)."""
    function = mutant.rsplit(".", 1)[-1]
    found = re.search(rf"^([ \t]*)(?:async[ \t]+)?def {re.escape(function)}\(", mutated, re.M)
    if found is None:
        return ""
    indent = len(found.group(1))
    lines = mutated[found.start() :].splitlines()
    body = [lines[0]]
    for line in lines[1:]:
        stripped = line.lstrip()
        if stripped and len(line) - len(stripped) <= indent and not stripped.startswith(")"):
            break
        body.append(line)
    return "\n".join(body).rstrip()


_BARE_STRING = re.compile(r'^\s*"[^"]*",?$')  # a line that is one plain string literal


def _in_sql(lines: list[str], i: int) -> bool:
    """Whether line i is SQL: it holds an upper-case SQL keyword, or it is a plain string
    literal in a run of such lines (one implicitly concatenated string) that holds one."""
    if _SQL_KEYWORD.search(lines[i]):
        return True
    if not _BARE_STRING.match(lines[i]):
        return False
    first = last = i
    while first > 0 and _BARE_STRING.match(lines[first - 1]):
        first -= 1
    while last + 1 < len(lines) and _BARE_STRING.match(lines[last + 1]):
        last += 1
    return any(_SQL_KEYWORD.search(line) for line in lines[first : last + 1])


def _sql_case_only(mutated: str, mutant: str) -> bool:
    """Whether `mutant` differs from its original function only in the letter case of SQL
    text: every changed line equal ignoring case and SQL (see `_in_sql`), with its
    single-quoted SQL values unchanged."""
    function = mutant.rsplit(".", 1)[-1]
    original = _mutant_source(mutated, re.sub(r"__mutmut_\d+$", "__mutmut_orig", function))
    changed = _mutant_source(mutated, function)
    if not original or not changed:
        return False
    before, after = original.splitlines()[1:], changed.splitlines()[1:]  # past the names
    if len(before) != len(after):
        return False
    pairs = [(i, b, a) for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    return bool(pairs) and all(
        b.lower() == a.lower()
        and _in_sql(before, i)
        and re.findall(r"'[^']*'", b) == re.findall(r"'[^']*'", a)
        for i, b, a in pairs
    )


def report(name: str, module: Module, *, verbose: bool, fail_under: float) -> bool:
    """Print the module's score and what it missed; True when the equivalent list holds
    and the score is at least `fail_under` percent."""
    codes = results(name, module)
    prefix = module.path.removeprefix("src/").removesuffix(".py").replace("/", ".") + "."
    equivalent = {prefix + m: why for m, why in EQUIVALENT.get(name, {}).items()}
    mutated = (WORK / name / "mutants" / module.path).read_text(encoding="utf-8")
    stale = [m for m, (piece, _) in equivalent.items() if piece not in _mutant_source(mutated, m)]
    killed_equivalent = [m for m in equivalent if codes.get(m) in DETECTED]
    if name in SQL_CASE_MODULES:
        sql_case = [
            m
            for m, c in codes.items()
            if c not in DETECTED and m not in equivalent and _sql_case_only(mutated, m)
        ]
        equivalent.update({m: ("", SQL_CASE_RULE) for m in sql_case})
    counted = {m: c for m, c in codes.items() if m not in equivalent}
    detected = sum(c in DETECTED for c in counted.values())
    missed = sorted(m for m, c in counted.items() if c not in DETECTED)
    score = detected / len(counted) if counted else 1.0
    statuses = Counter(
        "detected" if c in DETECTED else STATUS.get(c, f"exit {c}") for c in counted.values()
    )
    print(
        f"{name}: {detected}/{len(counted)} = {score:.1%} "
        f"({len(codes)} mutants, {len(equivalent)} equivalent excluded; "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        + ")"
    )
    for m in missed:
        print(f"    {STATUS.get(counted[m], counted[m])}: {m}")
    if verbose:
        for m, (_, why) in equivalent.items():
            print(f"    equivalent: {m}: {why}")
    for m in stale:
        print(f"    listed as equivalent but that mutant is not (or no longer) this one: {m}")
    for m in killed_equivalent:
        print(f"    listed as equivalent but killed: {m}")
    if score * 100 < fail_under:
        print(f"    under {fail_under:g}%")
    return not stale and not killed_equivalent and score * 100 >= fail_under


def markdown(names: list[str]) -> str:
    """The equivalent mutants of the last runs as docs/benchmarks.md lists them."""
    out = []
    for name in names:
        module = MODULES[name]
        equivalent = EQUIVALENT.get(name, {})
        out.append(f"\n**{name}** (`{module.path}`)\n")
        if equivalent:
            out.append("| mutant | mutated code | why it is equivalent |\n|---|---|---|")
        elif name not in SQL_CASE_MODULES:
            out.append("None: every mutant is killed.")
        for mutant, (piece, why) in equivalent.items():
            short = mutant.replace("xǁ", "").replace("ǁ", ".").removeprefix("x_")
            code = " ".join(piece.replace("|", "\\|").split())
            out.append(f"| `{short}` | `{code}` | {why} |")
        if name in SQL_CASE_MODULES:
            mutated = (WORK / name / "mutants" / module.path).read_text(encoding="utf-8")
            groups: dict[str, list[int]] = {}
            for mutant, code in results(name, module).items():
                function, number = mutant.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)
                if (
                    code not in DETECTED
                    and mutant.rsplit(".", 1)[-1] not in equivalent
                    and _sql_case_only(mutated, mutant)
                ):
                    short = function.replace("xǁ", "").replace("ǁ", ".").removeprefix("x_")
                    groups.setdefault(short, []).append(int(number))
            listed = "; ".join(f"`{f}` {', '.join(map(str, sorted(v)))}" for f, v in groups.items())
            count = sum(map(len, groups.values()))
            out.append(
                f"\nAnd {count} mutants of the SQL-case rule ({SQL_CASE_RULE}), by function "
                f"and mutant number: {listed}."
            )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--max-children", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="reuse the last run's mutants")
    parser.add_argument("--report", action="store_true", help="score the last run only")
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--markdown", action="store_true", help="the equivalents, for docs/benchmarks.md"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the equivalents")
    parser.add_argument(
        "--fail-under", type=float, default=0.0, metavar="PCT", help="fail below this score"
    )
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    if args.markdown:
        print(markdown(names))
        return 0
    if args.list:
        for name in names:
            print(f"{name}: {MODULES[name].path} <- {' '.join(MODULES[name].tests)}")
        return 0
    failed = []
    for name in names:
        if not args.report:
            code = run(name, MODULES[name], max_children=args.max_children, keep=args.keep)
            if code != 0:
                failed.append(name)
                continue
    print()
    for name in names:
        if name not in failed and not report(
            name, MODULES[name], verbose=args.verbose, fail_under=args.fail_under
        ):
            failed.append(name)
    for name in failed:
        print(f"{name}: FAILED (mutmut failed, a score under --fail-under, or a stale list)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
