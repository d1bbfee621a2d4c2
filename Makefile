# The two commands of the quick start: `make serve` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# pip's stamp files: re-install only when the project's dependencies change
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP    := $(VENV)/.installed-test

.PHONY: serve test lint format protos example bench clean

serve: $(RUNTIME_STAMP)
	$(BIN)/modelgate serve --repository examples/models

# The tests also need OpenLDAP's slapd (run as a user process by the LDAP tests): the script
# installs it through apt where it is missing (root or sudo), and does nothing when it is there.
test: $(TEST_STAMP)
	sh tests/install-system-deps.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate gateway/_proto from protos/*.proto (tests fail when the committed code is stale).
protos: $(TEST_STAMP)
	$(BIN)/python protos/generate.py

# Retrain the example model and rebuild its profiles (deterministic: same bytes every time).
example: $(VENV)/.installed-example
	$(BIN)/python examples/train_credit_risk.py

# wrk and h2load are C load generators (Debian: wrk, nghttp2-client); without them the bench
# falls back to its own Python client, so a failed install is not fatal.
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null && command -v h2load >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq wrk nghttp2-client) || \
	  echo "wrk/h2load unavailable: the bench uses its Python client"
	$(BIN)/modelgate bench compare

$(VENV)/bin/pip:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(RUNTIME_STAMP)

$(VENV)/.installed-example: pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e '.[example]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/bin/pip
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
