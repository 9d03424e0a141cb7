# Two commands: `make demo` and `make test`. Both bootstrap what they need, idempotently.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test lint format bench clean install release

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@$(VENV)/bin/edge-agent demo

# Three workers (pytest-xdist), a test file per worker at a time: every worker has its own
# session broker and Xvfb, tests on a shared broker use ids of their own. Most integration
# tests wait on brokers, players and scaled clocks: with two workers the 2 cores were busy 1.1
# on average (16 min 38 s on a quiet machine, 2026-12-03), with three the suite took 12 min 5 s.
# The files go out longest first (tests/conftest.py orders them), so no long one is left for last.
TEST_WORKERS ?= 3
test: bootstrap
	@$(MAKE) --no-print-directory esphome >/dev/null 2>&1 || echo "make test: ESPHome could not be installed; tests/test_firmware.py skips its validator check"
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

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

# A signed release for over-the-air updates (README "OTA"): the project's wheel and every
# runtime dependency's, built for this machine's architecture and Python (build on the boxes'
# kind: an aarch64 fleet needs aarch64 wheels), packed with a manifest of sha256s and signed
# with the ops key. e.g. make release RELEASE=0.2.0 RELEASE_KEY=ops/ops_private.pem
RELEASE ?= $(shell $(PY) -c "import importlib.metadata as m; print(m.version('edge-agent'))")
RELEASE_KEY ?= ops/ops_private.pem
release: bootstrap
	@test -f "$(RELEASE_KEY)" || { echo "make release: no signing key $(RELEASE_KEY) (edge-ops keygen --out ops; or RELEASE_KEY=...)"; exit 2; }
	@rm -rf out/release/$(RELEASE) && mkdir -p out/release/$(RELEASE)/wheels
	@$(VENV)/bin/pip wheel --quiet --wheel-dir out/release/$(RELEASE)/wheels .
	@$(VENV)/bin/edge-ops release build out/release/$(RELEASE) --release $(RELEASE) \
		--key $(RELEASE_KEY) --out out/edge-agent-$(RELEASE).tar
	@echo "make release: out/edge-agent-$(RELEASE).tar"

clean:
	rm -rf out var .pytest_cache

# ESPHome in its own venv (it pins many dependencies the agent does not want); about 40 s once.
# tests/test_firmware.py validates every rendered config with it, and skips saying so without it.
.PHONY: esphome
esphome:
	@test -x .venv-esphome/bin/esphome || \
		(python3 -m venv .venv-esphome && .venv-esphome/bin/pip install -q 'esphome>=2025.6')
	@.venv-esphome/bin/esphome version
