# Everything a newcomer needs: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
N      ?= 2000

.PHONY: demo test lint typecheck pytest chaos chaos-control bench docs wheel-check clean

# Two installs: the demo needs only the sandbox extra (pyHanko, a few MB); tests need the
# dev extra (linters, the browser driver, PostgreSQL's client: a few hundred MB).
DEMO_STAMP := $(VENV)/.demo-stamp

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "qes-async needs Python 3.10 or newer")'
	@echo "==> creating the virtual environment $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "==> installing qes-async with the sandbox extra into $(VENV) (about 60 MB with pip)"
	@$(BIN)/python -m pip install --quiet -e '.[sandbox]'
	@touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "==> installing qes-async with the dev extra into $(VENV) (a few hundred MB: linters, test tools)"
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP) $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	@echo "==> qes-async demo: a qualified signature against the embedded sandbox"
	$(BIN)/qes-async demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check qes_async tests examples benchmarks chaos
	$(BIN)/ruff format --check qes_async tests examples benchmarks chaos

typecheck: $(STAMP)
	$(BIN)/mypy --strict qes_async

pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup --cov=qes_async --cov-report=term:skip-covered

chaos: $(STAMP)
	$(BIN)/python -m chaos --flows $(N)

# The duplicate count's negative control: passes only if it finds exactly the 4 planted.
chaos-control: $(STAMP)
	$(BIN)/python -m chaos --flows 200 --seed 2 --plant-duplicates 4

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The reference site, from README.md and the docstrings, into site/; warnings are errors.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# Build the sdist and wheel, then run the installed wheel from a fresh environment.
wheel-check: $(STAMP)
	PYTHON=$(BIN)/python .ci/wheel-check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage signed site build dist
