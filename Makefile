# The obvious commands. `make dev` then `make test` is the whole quick start.
VENV ?= .venv
PY := $(VENV)/bin/python
S3_PORT ?= 9310
export WARREN_TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F
export WARREN_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
export WARREN_TEST_S3_URL ?= http://127.0.0.1:$(S3_PORT)
# Where deploy/service-credentials.sh (run by `make services`) writes Warren's own RabbitMQ and
# Redis users' URLs. The tests keep the guest / no-password URLs above: those users stay.
WARREN_ENV_FILE ?= $(if $(filter 0,$(shell id -u)),/etc/warren/warren.env,.warren/warren.env)

.PHONY: dev install services browser example test lint bench clean

dev: install services example

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,s3]'
	touch $@

services: install
	PYTHON=$(PY) WARREN_S3_PORT=$(S3_PORT) WARREN_ENV_FILE=$(WARREN_ENV_FILE) \
		bash deploy/ensure-services.sh

example: install services
	set -a; [ ! -f $(WARREN_ENV_FILE) ] || . $(WARREN_ENV_FILE); set +a; \
	PATH=$(VENV)/bin:$$PATH bash examples/run.sh

# Headless Chromium for the console's browser test (tests/system/test_console.py).
browser:
	command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && SUDO= || SUDO=sudo; $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: install services browser lint
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install services
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/sandbox.py
	$(PY) bench/runtimes.py
	$(PY) bench/provisioned.py
	[ ! -f bench/fleet.py ] || $(PY) bench/fleet.py
	[ ! -f bench/sources.py ] || $(PY) bench/sources.py
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) bench/gateway.py

clean:
	rm -rf $(VENV) .warren build *.egg-info
