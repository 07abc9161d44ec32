# tkerp: `make demo` runs the back office with demo data, `make test` runs the suite.
# See README.md. Every target installs what it needs first.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Marks a finished install, so the next run skips pip; editing pyproject.toml reinstalls.
INSTALLED := $(VENV)/.tkerp-installed

# worksteal: a worker that runs out takes half of the other's queue. Plain `load` hands out
# batches up front, and once left one worker idle for four of the suite's nine minutes.
PYTEST_ARGS ?= -n 2 --dist worksteal
# Commands that only need the models (lint) run with the test settings: no DATABASE_URL needed.
MANAGE_TEST := DJANGO_SETTINGS_MODULE=tkerp.settings_test $(BIN)/python manage.py

.PHONY: help install demo test lint format qcluster dbstop

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED)  ## create .venv and install tkerp with its dev tools

demo: $(INSTALLED)  ## the whole product: database, demo data, web + background workers
	@mkdir -p var
	@test -f var/demo.env || printf '%s\n' \
		'# Written by `make demo`: this checkout runs the local demo. Every command run in it' \
		'# (web, workers, a second terminal'"'"'s manage.py) reads this file, so DEBUG is on and' \
		'# the embedded database and the platform sandboxes are allowed. Never deploy with it;' \
		'# delete it to run this checkout like production (then set DATABASE_URL, SECRET_KEY...).' \
		'DEBUG=true' > var/demo.env
	@echo "Preparing the database (the embedded PostgreSQL in var/pgdata unless DATABASE_URL is set)..."
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "Starting the back office and the background workers. Open http://127.0.0.1:8000/admin/"
	@echo "and log in as above; Ctrl-C stops everything."
	@trap '$(BIN)/python manage.py dbserver stop >/dev/null 2>&1 || true' EXIT; \
		$(BIN)/python manage.py runall 127.0.0.1:8000

test: $(INSTALLED)  ## run the test suite on PostgreSQL (DATABASE_URL, else the embedded server)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(INSTALLED)  ## ruff check, ruff format --check, and no missing migrations
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MANAGE_TEST) makemigrations --check --dry-run

format: $(INSTALLED)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

qcluster: $(INSTALLED)  ## run only the background workers (make demo already runs them)
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py qcluster

dbstop: $(INSTALLED)  ## stop the embedded PostgreSQL server (it starts by itself when needed)
	@# The test settings: a checkout that only ran `make test` has no var/demo.env to allow it.
	$(MANAGE_TEST) dbserver stop
