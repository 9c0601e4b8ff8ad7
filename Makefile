# Set-up and the two everyday jobs. `make profile` and `make test` each create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: profile test install clean

$(BIN)/composer: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,draw,train,export]"
	touch $@

install: $(BIN)/composer

profile: $(BIN)/composer
	$(BIN)/composer profile blueprints/coatnet0.yaml

test: $(BIN)/composer
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
