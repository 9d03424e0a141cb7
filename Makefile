# Two commands: `make demo` and `make test`. Both bootstrap what they need, idempotently.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test lint format bench clean install

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@$(VENV)/bin/edge-agent demo

# Two workers (pytest-xdist), a test file per worker at a time: every worker has its own
# session broker and Xvfb, tests on a shared broker use ids of their own; most integration
# tests wait on brokers, players and scaled clocks, so two halve the wall time on 2 cores.
TEST_WORKERS ?= 2
test: bootstrap
	@$(MAKE) --no-print-directory esphome >/dev/null 2>&1 || echo "make test: ESPHome could not be installed; tests/test_firmware.py skips its validator check"
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# ruff everywhere; mypy on the product (every function typed in the pure core and the stages:
# pyproject.toml, [tool.mypy]).
lint: bootstrap
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

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

# ESPHome in its own venv (it pins many dependencies the agent does not want); about 40 s once.
# tests/test_firmware.py validates every rendered config with it, and skips saying so without it.
.PHONY: esphome
esphome:
	@test -x .venv-esphome/bin/esphome || \
		(python3 -m venv .venv-esphome && .venv-esphome/bin/pip install -q 'esphome>=2025.6')
	@.venv-esphome/bin/esphome version
