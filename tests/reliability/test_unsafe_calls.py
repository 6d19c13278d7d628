"""No user file is ever unpickled, evaluated or loaded by an unsafe YAML loader.

Users hand therapygym models files, profiles, transcripts, bench files and chatbot
mappings, often from other people. Reading one must never run code, so the package may
not call the loaders that can: this test reads every module's syntax tree and fails on
any of them, wherever it is called.
"""

from __future__ import annotations

import ast
from pathlib import Path

import therapygym

PACKAGE = Path(therapygym.__file__).parent

FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
# yaml.load with any loader can construct Python objects unless it is the safe one, and
# these always can.
FORBIDDEN_ATTRIBUTES = {
    ("yaml", "load"),
    ("yaml", "load_all"),
    ("yaml", "unsafe_load"),
    ("yaml", "unsafe_load_all"),
    ("yaml", "full_load"),
    ("yaml", "full_load_all"),
    ("numpy", "load"),
    ("np", "load"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}


def problems_in(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                modules = [alias.name for alias in node.names]
            found += [
                f"{where}: imports {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                found.append(f"{where}: calls {func.id}()")
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                pair = (func.value.id, func.attr)
                if pair in FORBIDDEN_ATTRIBUTES:
                    found.append(f"{where}: calls {'.'.join(pair)}()")
                elif pair == ("torch", "load") and not any(
                    k.arg == "weights_only" and getattr(k.value, "value", None) is True
                    for k in node.keywords
                ):
                    found.append(f"{where}: torch.load without weights_only=True")
                elif func.attr in {"create_subprocess_shell"} or any(
                    k.arg == "shell" and getattr(k.value, "value", None) is True
                    for k in node.keywords
                ):
                    found.append(f"{where}: runs a shell")
    return found


def test_the_package_never_calls_an_unsafe_loader() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50
    assert [p for path in modules for p in problems_in(path)] == []


def test_the_check_finds_what_it_forbids(tmp_path: Path) -> None:
    """The scan is only worth something if it fails: plant each pattern and see it caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nfrom yaml import safe_load\nimport yaml\n"
        "yaml.load(open('f'), Loader=yaml.Loader)\neval('1')\n"
        "import torch\ntorch.load('x')\nimport subprocess\nsubprocess.run('ls', shell=True)\n",
        encoding="utf-8",
    )
    found = problems_in(bad, root=tmp_path)
    assert [f.split(": ", 1)[1] for f in found] == [
        "imports pickle",
        "calls yaml.load()",
        "calls eval()",
        "torch.load without weights_only=True",
        "runs a shell",
    ]
