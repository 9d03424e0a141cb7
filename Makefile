# Two commands: `make demo` and `make test`. Both bootstrap what they need, idempotently.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test lint format bench clean install

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@$(VENV)/bin/edge-agent demo

test: bootstrap
	@$(VENV)/bin/python -m pytest

lint: bootstrap
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: bootstrap
	@$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: bootstrap
	@$(VENV)/bin/edge-agent bench all

# On the box, as root: units, config, service users, state dirs (README.md, "On the box").
# e.g. make install INSTALL_ARGS="--config store.toml --screen screen-1 --with-mosquitto"
install: bootstrap
	@$(VENV)/bin/edge-agent install $(INSTALL_ARGS)

clean:
	rm -rf out var .pytest_cache
