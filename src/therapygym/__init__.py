"""therapygym: evaluate and align therapy chatbots on CBT fidelity and clinical safety.

A research and evaluation tool, not a clinical device.

From Python (docs/notebook.md)::

    import therapygym as tg
    res = tg.evaluate(therapists=["rule-based"], patients="risk", judges=["openai:gpt-4o"])
    res.to_pandas("sessions")

The names in `__all__` are imported when first used, so `import therapygym` (and every
command-line start, which imports it for the version) stays fast.
"""

import importlib as _importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    "evaluate": "therapygym.api",
    "judge": "therapygym.api",
    "load_run": "therapygym.api",
    "Evaluation": "therapygym.api",
    "FailedWorkWarning": "therapygym.api",
    "select_profiles": "therapygym.api",
    "TherapygymError": "therapygym.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> object:
    # importlib, not an import statement (nor a TYPE_CHECKING import): the import
    # contracts (pyproject) would read one as an edge from the package root, which every
    # layer imports for `__version__`, up to the API at the top
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'therapygym' has no attribute '{name}'")


def __dir__() -> list[str]:
    """The public names and the module's own dunders: what completion should offer."""
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
