# The two commands a new user needs (each sets everything up on a fresh machine):
#   make demo   the embedded broker, a trained model, a worker and simulated machines; alerts on screen
#   make test   the whole test suite (unit + integration against a real broker)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration test-faults install schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/stream-app demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not faults" $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -m integration $(PYTEST_ARGS)

test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/faults $(PYTEST_ARGS)

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) var model_store .pytest_cache
