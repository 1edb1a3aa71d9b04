# The README's two commands: `make demo` and `make test`. Both build a local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test test-versions install install-test lint types package docs all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# compileall: an editable install has no bytecode, and where PYTHONDONTWRITEBYTECODE is set
# every process of a run (and of the tests) would compile the package afresh (~80 ms each)
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m compileall -q zmqpipeline > /dev/null

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q zmqpipeline > /dev/null

## demo: run a complete example pipeline (collector, distributor, 2 workers)
demo: install
	$(BIN)/zmqpipeline run examples/singlethread --workers 2

## test: the whole test suite
test: install-test
	$(BIN)/python -m pytest

## test-versions: the unit, protocol and pipeline tests on the other supported Pythons
## (3.10, 3.12, 3.13, found under pyenv; each in its own .venv-3.X). A version not found
## fails the target, or with MISSING_PYTHONS=warn is named on stderr and left out (CI on
## a machine without pyenv: no package registry here serves those Pythons).
OTHER_PYTHONS ?= 3.10 3.12 3.13
MISSING_PYTHONS ?= fail
CORE_TESTS = tests/test_layout.py tests/test_types.py tests/protocol tests/distributor \
	tests/collector tests/worker tests/runtime tests/pipeline/test_pipeline.py
test-versions:
	@set -e; for v in $(OTHER_PYTHONS); do \
	  py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python3 2>/dev/null | sort -V | tail -1); \
	  if [ -z "$$py" ] && [ "$(MISSING_PYTHONS)" = warn ]; then \
	    echo "test-versions: WARNING: no Python $$v under pyenv: its tests did not run" >&2; continue; fi; \
	  if [ -z "$$py" ]; then echo "test-versions: no Python $$v under pyenv" >&2; exit 1; fi; \
	  echo "== Python $$v ($$py)"; \
	  [ -x .venv-$$v/bin/python ] || $$py -m venv .venv-$$v; \
	  .venv-$$v/bin/python -m pip install --quiet --upgrade pip; \
	  .venv-$$v/bin/python -m pip install --quiet -e '.[test]'; \
	  .venv-$$v/bin/python -m compileall -q zmqpipeline > /dev/null; \
	  .venv-$$v/bin/python -m pytest -q -p no:cacheprovider $(CORE_TESTS); \
	done

## lint: ruff check and format check
lint: $(BIN)/python
	$(BIN)/python -m pip install --quiet "ruff==0.17.6"  # pinned: a new ruff may format differently
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## types: mypy --strict on the package
types: install
	$(BIN)/python -m pip install --quiet -e '.[dashboard]' "mypy==2.4.1"  # typed optional parts
	$(BIN)/mypy

## package: build wheel + sdist, check them, install the wheel in a clean venv and run an example
package: $(BIN)/python
	$(BIN)/python -m pip install --quiet build twine
	rm -rf dist build/wheel-venv
	$(BIN)/python scripts/vendor_uplot.py  # the dashboard's chart library, pinned (npm pack)
	$(BIN)/python -m build --outdir dist . > /dev/null
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/vendor_uplot.py --check dist
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet dist/*.whl
	cd build && wheel-venv/bin/zmqpipeline run ../examples/singlethread --workers 2 --quiet
	rm -rf build/wheel-venv

## docs: build the documentation site into site/ (mkdocs --strict: any warning fails)
# (NO_MKDOCS_2_WARNING only hides mkdocs-material's notice about its own future)
docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## all: lint, types, tests, docs and the package check, like CI
all: lint types test docs package

clean:
	rm -rf $(VENV) .venv-3.* build dist *.egg-info .pytest_cache site
