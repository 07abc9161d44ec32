# tkerp: `make demo` runs the back office with demo data, `make test` runs the suite.
# See README.md. Every target installs what it needs first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Marks a finished install, so the next run skips pip; editing pyproject.toml reinstalls.
INSTALLED := $(VENV)/.tkerp-installed

# The suite runs on PostgreSQL: DATABASE_URL if set, else the local server.
TEST_DATABASE_URL := $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/tkerp)
# The server part of that URL and the database name (plain URLs without ?options).
PG_SERVER_URL := $(dir $(TEST_DATABASE_URL))postgres
PG_DATABASE := $(notdir $(TEST_DATABASE_URL))
PYTEST_ARGS ?= -n 2

.PHONY: help install demo test lint format qcluster postgres

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED)  ## create .venv and install tkerp with its dev tools

demo: $(INSTALLED)  ## migrate the SQLite demo database, seed it, serve 127.0.0.1:8000
	@echo "Preparing the database (tkerp.sqlite3 unless DATABASE_URL is set)..."
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "Starting the server. Open http://127.0.0.1:8000/admin/ and log in as above; Ctrl-C stops it."
	$(BIN)/python manage.py runserver 127.0.0.1:8000

test: $(INSTALLED) postgres  ## run the test suite on PostgreSQL (2 workers)
	DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/pytest $(PYTEST_ARGS)

postgres:  ## make sure PostgreSQL answers (start the local cluster if not) and the database exists
	@if ! pg_isready -q -d '$(TEST_DATABASE_URL)'; then \
		echo "PostgreSQL is not answering; starting the local cluster"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
		for _ in $$(seq 30); do pg_isready -q -d '$(TEST_DATABASE_URL)' && break; sleep 1; done; \
		pg_isready -d '$(TEST_DATABASE_URL)'; \
	fi
	@if ! psql '$(PG_SERVER_URL)' -tAc "SELECT 1 FROM pg_database WHERE datname = '$(PG_DATABASE)'" \
		| grep -q 1; then \
		echo "Creating database $(PG_DATABASE)"; \
		psql '$(PG_SERVER_URL)' -qc 'CREATE DATABASE "$(PG_DATABASE)"'; \
	fi

lint: $(INSTALLED)  ## ruff check, ruff format --check, and no missing migrations
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

format: $(INSTALLED)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

qcluster: $(INSTALLED)  ## run the django-q2 background workers (same database as the demo)
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py qcluster
