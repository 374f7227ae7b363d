# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup system-deps venv constraints controlplane lint typecheck test test-unit test-engine test-k8s chaos bench demo down crds clean

help:
	@echo "make demo   - start a local stack (control plane, PostgreSQL, Redis, operator, workers, dashboard) with sample jobs"
	@echo "make down   - stop everything make demo started"
	@echo "make test   - install what is missing, lint, type-check and run every test"
	@echo "make bench  - run the benchmarks under bench/, print their figures and write docs/benchmarks.md"
	@echo "make chaos  - kill, wipe and stall real services and print what each fault cost"

setup: system-deps venv

# Debian packages the tests and the demo start for real (no init system runs them here), and
# the headless Chromium (with a font, or every glyph renders as a box) the page's browser tests
# drive, and Node.js for BullMQ in the side-by-side benchmark. Only what is missing is installed.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium fonts-dejavu-core"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)

# Every version comes from constraints.txt, as in CI and the image: a new release upstream
# changes nothing here until `make constraints` is run and its diff committed.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Re-pin: upgrade within pyproject.toml's ranges in the dev venv, then freeze it (without sundial).
constraints: venv
	$(BIN)/pip install -q -U -e '.[dev]'
	@{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -vi '^sundial=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

controlplane:
	@tools/controlplane/build.sh >/dev/null

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

test: setup controlplane lint typecheck
	$(BIN)/pytest -q

test-unit: venv
	$(BIN)/pytest -q tests/unit

test-engine: setup
	$(BIN)/pytest -q tests/integration

test-k8s: setup controlplane
	$(BIN)/pytest -q tests/k8s

# Every chaos test, the minutes-long ones too, and the spec fuzz at 10,000 examples, then a
# table of what each fault cost (runs lost, duplicates, recovery seconds).
chaos: setup
	@mkdir -p .artifacts && rm -f .artifacts/chaos.jsonl
	SUNDIAL_CHAOS_REPORT=$(CURDIR)/.artifacts/chaos.jsonl SUNDIAL_FUZZ_EXAMPLES=10000 \
		$(BIN)/pytest -q -s -m 'chaos or chaos_long' tests/chaos tests/unit/test_spec_fuzz.py; status=$$?; \
		$(BIN)/python -m tests.chaos.harness .artifacts/chaos.jsonl; exit $$status

# SIDE_BY_SIDE_ARGS passes options to the side-by-side run, e.g. SIDE_BY_SIDE_ARGS='--note "..."';
# CRONJOB_BENCH_ARGS to the CronJob one (default 1,000 a side for 5 minutes, as issue #14 asks;
# about 10 minutes on 2 quiet cores), e.g. CRONJOB_BENCH_ARGS='--jobs 200 --minutes 3'.
bench: setup
	$(BIN)/python -m bench.side_by_side $(SIDE_BY_SIDE_ARGS)
	$(BIN)/python -m bench.fire_lateness
	$(BIN)/python -m bench.buffer_overhead
	$(BIN)/python -m bench.fire_cost
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.run_lateness
	$(BIN)/python -m bench.run_lateness --spread --sizes 100000
	$(BIN)/python -m bench.operator_reconcile
	$(BIN)/python -m bench.operator_churn
	$(BIN)/python -m bench.dashboard_api
	$(BIN)/python -m bench.cronjob_side_by_side $(CRONJOB_BENCH_ARGS)
	$(BIN)/python -m bench.launcher_tracking

# The chart carries copies (helm packages no symlinks); a test fails when they drift.
crds: venv
	$(BIN)/python -m sundial.core.crd > deploy/crds/sundial.dev_scheduledjobs.yaml
	$(BIN)/python -m sundial.core.crd --policy > deploy/crds/sundial.dev_targetpolicies.yaml
	cp deploy/crds/*.yaml deploy/helm/sundial/crds/
	cp deploy/monitoring/prometheus-rules.yaml deploy/monitoring/grafana-dashboard.json deploy/helm/sundial/files/

# REDIS=sentinel or REDIS=cluster starts Redis as a Sentinel set or a 3-primary Cluster.
demo: setup controlplane
	$(BIN)/python -m sundial.devstack.demo up --redis $(or $(REDIS),single)

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sundial.devstack.demo down; fi

clean: down
	rm -rf $(VENV) .sundial .mypy_cache .pytest_cache .ruff_cache
