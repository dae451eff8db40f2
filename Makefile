# Two commands: `make demo` and `make test`. Both create .venv with torch 2.13.0 (the local CPU wheel,
# installed before the package so pip never resolves a CUDA build) and the package.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: docs docs-serve demo lint format test test-slow test-random mutation mutation-sample mutation-score bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# torchattacks only cross-checks PGD in the tests; its metadata wants torchvision, so never resolve its deps
	$(PY) -m pip install --quiet --no-deps torchattacks==3.5.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ticketlab imp --rounds 6 --control reinit --out runs/demo

# ruff: the tree formatted and clean under pyproject's rule set (`make format` rewrites it so).
LINTED := src tests benchmarks experiments examples
lint: $(STAMP)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/ruff check $(LINTED)

format: $(STAMP)
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

# The suite without its few slow end-to-end tests (marked @pytest.mark.slow); `make test-slow` runs those.
test: $(STAMP)
	$(PY) -m pytest -q -p no:randomly -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -p no:randomly -m slow

# The whole suite, slow tests included, in a random order (pytest-randomly; SEED=N replays an order): no test
# may depend on another.
test-random: $(STAMP)
	$(PY) -m pytest -q $(if $(SEED),--randomly-seed=$(SEED),)

# Mutation testing (pyproject's [tool.mutmut]): 18,377 mutants, about a day on 2 cores, not in CI; NAMES="GLOB..."
# runs only those (e.g. NAMES='ticketlab.runs.seeds.*'), merged into an earlier run's results. One torch thread
# per mutant process: JOBS (default 2) processes share the cores without oversubscribing them. A test that runs
# over two minutes of wall-clock time fails (PYTEST_TIMEOUT): a mutant that deadlocks threads uses no CPU time.
# `make mutation-sample` runs a stratified 3% sample of the newer modules' mutants (about an hour) and scores it.
# `make mutation-score` prints the score per module; tests/mutation/equivalent.txt lists equivalent survivors.
MUTMUT := PYTEST_TIMEOUT=120 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $(or $(JOBS),2)

mutation: $(STAMP)
	$(if $(NAMES),,rm -rf mutants)
	$(MUTMUT) $(NAMES)
	$(PY) tests/mutation/score.py

mutation-sample: $(STAMP)
	rm -rf mutants
	$(PY) tests/mutation/generate.py
	$(PY) tests/mutation/sample.py --fraction 0.03 --min 12 --seed 1 > mutants/sample.txt
	$(MUTMUT) $$(cat mutants/sample.txt)
	$(PY) tests/mutation/score.py --names mutants/sample.txt

mutation-score: $(STAMP)
	$(PY) tests/mutation/score.py --survivors

bench: $(STAMP)
	$(PY) benchmarks/bench_mask_overhead.py
	$(PY) benchmarks/bench_imp_round.py
	$(PY) benchmarks/bench_pack.py
	$(PY) benchmarks/bench_optimizers.py
	$(PY) benchmarks/bench_dst.py
	$(PY) benchmarks/bench_sparse.py
	$(PY) benchmarks/bench_sparse_candidates.py
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_adversarial.py
	$(PY) benchmarks/bench_verify.py
	$(PY) benchmarks/bench_verify_complete.py
	$(PY) benchmarks/bench_semi_structured.py
	$(PY) benchmarks/bench_replicates.py
	$(PY) benchmarks/bench_sparse_training.py

clean:
	rm -rf $(VENV) runs/demo

# The docs site (mkdocs.yml): strict, so a broken link, anchor or API reference fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000
