"""Importers: ratings from other people's files, turned into one `Bench`.

`load_bench` is the one entry point the CLI and the calibration report need: a bench JSONL
path as is, or `<importer>:<path>` for a source in another format.
"""

from __future__ import annotations

from pathlib import Path

from therapygym.calibration.bench import Bench, BenchError, read_bench_jsonl
from therapygym.calibration.importers.annomi import import_annomi
from therapygym.calibration.importers.moore import import_moore_validation
from therapygym.calibration.importers.table import TableMapping, import_table, load_table_mapping

__all__ = [
    "SOURCES",
    "TableMapping",
    "import_annomi",
    "import_moore_validation",
    "import_table",
    "load_bench",
    "load_table_mapping",
]

SOURCES = {
    "annomi": "AnnoMI folder or AnnoMI-simple.csv",
    "moore": "moore_stigma folder or interjections/classification_validation.csv",
    "table": "CSV/TSV/JSONL ratings with a mapping file",
}


def load_bench(source: str, *, mapping: Path | None = None) -> Bench:
    """`PATH` (a bench JSONL), `annomi:PATH`, `moore:PATH` or `table:PATH` (needs `mapping`)."""
    prefix, sep, rest = source.partition(":")
    if not sep or len(prefix) < 2 or Path(source).exists():  # "C:\..." or a plain path
        prefix, rest = "", source
    if prefix and prefix not in SOURCES:
        valid = "; ".join(f"{name}:PATH ({what})" for name, what in SOURCES.items())
        raise BenchError(
            f"bench source {source!r}: unknown importer '{prefix}'; expected a bench JSONL "
            f"path or one of {valid}"
        )
    if mapping is not None and prefix != "table":
        raise BenchError(f"bench source {source!r}: a mapping applies only to table:PATH sources")
    if prefix == "table":
        if mapping is None:
            raise BenchError(
                f"bench source {source!r}: a table source needs a mapping file (see "
                "therapygym.calibration.importers.table)"
            )
        return import_table(Path(rest), mapping)
    if prefix == "annomi":
        return import_annomi(Path(rest))
    if prefix == "moore":
        return import_moore_validation(Path(rest))
    return read_bench_jsonl(Path(rest))
