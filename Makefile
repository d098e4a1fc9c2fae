# The two commands a new user needs (each sets everything up on a fresh machine):
#   make demo   the embedded broker, a trained model, a worker and simulated machines; alerts on screen
#   make test   the whole test suite (unit + integration against a real broker)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration test-faults install schemas clean lock

# demo and tests both need the embedded broker (the production image leaves it out). Every
# install takes the versions in constraints.txt, so a fresh machine gets the set the tests last
# passed with; `make lock` resolves them anew (README "Dependencies").
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,embedded]'
	touch $(STAMP)

LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -e '.[test,embedded,load,bench]'
	{ echo "# Versions every install uses (make lock writes this file; see README \"Dependencies\")."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt
	rm -rf $(LOCK_VENV)

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
	rm -rf $(VENV) $(LOCK_VENV) var model_store .pytest_cache
