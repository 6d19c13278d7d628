"""Artefacts are written owner-only and whole: a failed write leaves nothing behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from therapygym.artefacts import atomic_directory, atomic_path, write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_text_is_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o000)
    try:
        path = write_text(tmp_path / "sub" / "summary.json", "{}")
    finally:
        os.umask(old)
    assert path.read_text() == "{}" and mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_replacing_a_readable_file_makes_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    path.chmod(0o644)
    write_text(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text("whole\n")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "whole\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.jsonl"]


def test_atomic_directory(tmp_path: Path) -> None:
    target = tmp_path / "hf"
    with atomic_directory(target) as tmp:
        (tmp / "README.md").write_text("card")
    assert (target / "README.md").read_text() == "card" and mode(target) == 0o700
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "other") as tmp:
        (tmp / "data").mkdir()
        raise RuntimeError("failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
