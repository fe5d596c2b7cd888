# The two README commands: `make run` and `make test`; and `make bench`, the benchmark.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium
NGINX ?= /usr/sbin/nginx
NODE ?= /usr/bin/node

.PHONY: run test lint format setup bench

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here).
# Installed when we may (root with apt-get); otherwise those tests skip (and fail in CI).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "Chromium is missing: install Debian's chromium package to run the browser tests."; \
	fi

# docs/receiving.md's JavaScript examples run under Debian's Node.js (tests/e2e/test_receiving_docs.py).
$(NODE):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; \
	else \
		echo "Node.js is missing: install Debian's nodejs package to test the receiving docs' examples."; \
	fi

# Web on http://127.0.0.1:8000, a worker and beat, on SQLite and the filesystem broker
# under var/ unless DATABASE_URL / CELERY_BROKER_URL say otherwise.
run: export DEBUG ?= true
run: export HOST ?= 127.0.0.1
run: export WEBHOOKS_ALLOWED_PRIVATE_NETWORKS ?= 127.0.0.0/8,::1/128
# Where web and worker keep their metrics (prometheus-client's multiprocess mode): emptied
# before they start, as the counters of processes that ran before would otherwise stay.
run: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/var/prometheus
run: $(STAMP)
	mkdir -p var "$$PROMETHEUS_MULTIPROC_DIR"
	find "$$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port 8000 web worker beat

# Tests run with production-like settings (DEBUG off) and throwaway keys.
test: export SECRET_KEY ?= insecure-key-for-tests-only
test: export WEBHOOKS_ENCRYPTION_KEYS ?= E3nc9fqopet4H0RnU2HHLKSXjkxnhHL70vQ2E-cITds=
test: export SECURE_SSL_REDIRECT ?= false
test: $(STAMP) $(CHROMIUM) $(NGINX) $(NODE)
	CHROMIUM=$(CHROMIUM) $(BIN)/pytest $(PYTEST_ARGS)

# The benchmark's receiver is Debian's nginx, installed when we may (root with apt-get);
# without it the bench falls back to a slower Python receiver and says so.
$(NGINX):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	else \
		echo "nginx is missing: install Debian's nginx package for the benchmark's receiver."; \
	fi

# Needs PostgreSQL and Redis (README, "Benchmark"); e.g. BENCH_ARGS="--smoke" or "--workers 2".
bench: $(STAMP) $(NGINX)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
