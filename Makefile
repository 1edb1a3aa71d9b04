# The README's two commands: `make demo` and `make test`. Both build a local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'

## demo: run a complete example pipeline (collector, distributor, 2 workers)
demo: install
	$(BIN)/zmqpipeline run examples/singlethread --workers 2

## test: the whole test suite
test: install-test
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
