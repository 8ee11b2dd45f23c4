# The two commands: `make run` (serve examples/pippo.lua on http://127.0.0.1:8080/) and `make test`.
# Every target sets up what it needs (venv, system packages, build) and is safe to re-run.
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMPS := .stamps
PROFILE ?=
RUN_ADDR ?= 127.0.0.1:8080

.PHONY: all run test build bench soak clean system venv

all: build

$(STAMPS):
	mkdir -p $(STAMPS)

# Python environment: the project (editable) and its test dependencies.
$(STAMPS)/venv: pyproject.toml | $(STAMPS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	# compat mode: a plain path in a .pth file, not an import hook that every worker would load
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(STAMPS)/venv

# System packages (Lua libraries, nginx, wrk, ...): installed by apt when missing.
$(STAMPS)/system: scripts/setup-system.sh | $(STAMPS)
	bash scripts/setup-system.sh base
	touch $@

system: $(STAMPS)/system

build: venv system
	$(VPY) uwsgiconfig.py --build $(PROFILE)

run: build
	@echo "serving examples/pippo.lua on http://$(RUN_ADDR)/ (Ctrl-C stops)"
	./uwsgi --http-socket $(RUN_ADDR) --http-socket-modifier1 6 --lua examples/pippo.lua --async 8

test: build
	$(VPY) -m pytest -q -p no:cacheprovider tests

bench: build
	bash scripts/setup-system.sh bench
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test,bench]' --config-settings editable_mode=compat
	$(VPY) bench/run.py $(if $(BENCH_QUICK),--quick,)

# Reliability run: load, SIGHUP, SIGKILL of a worker, slowloris and a fuzzer, ours then uWSGI 2.0.21
# (180 s each; SOAK_QUICK=1: 20 s each; SOAK_ARGS="--duration 600" for more).
soak: build
	bash scripts/setup-system.sh bench
	$(VPY) bench/soak.py $(if $(SOAK_QUICK),--quick,) $(SOAK_ARGS)

clean:
	test ! -x $(VPY) || $(VPY) uwsgiconfig.py --clean
	rm -rf $(STAMPS) build .pytest_cache .hypothesis
