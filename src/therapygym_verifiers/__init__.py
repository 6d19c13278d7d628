"""The taskset id `therapygym-verifiers`, as verifiers (0.4.0) and prime-rl load it.

verifiers resolves a taskset id to a top-level module (`therapygym-verifiers` ->
`therapygym_verifiers`) and takes the `Taskset` and `Env` subclasses that module exports
in `__all__`; it reads no entry points. This module is that name, shipped in the
therapygym wheel, so an installed therapygym (with verifiers beside it) loads by id:
`[env] taskset = {id = "therapygym-verifiers"}` in a verifiers or prime-rl config. The
code is `therapygym.rl.verifiers`; this only re-exports it.
"""

from therapygym.rl.verifiers import TherapyTaskset, TherapyVerifiersEnv

__all__ = ["TherapyTaskset", "TherapyVerifiersEnv"]
