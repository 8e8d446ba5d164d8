# The two commands of the README, and the pieces they are made of.
VENV := .venv

.PHONY: setup run test lint wheel-smoke

setup:  ## virtual environment, package, redis-server (idempotent)
	@deploy/bootstrap.sh

run: setup  ## local stack + gateway + worker + a demo trace
	$(VENV)/bin/spansieve run

test: setup  ## the whole suite against the real local stack
	@deploy/bootstrap.sh --browser
	$(VENV)/bin/spansieve stack up
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .

wheel-smoke: setup  ## the built wheel, installed in a fresh venv, run against the local stack
	$(VENV)/bin/spansieve stack up
	@bash tests/wheel_smoke.sh
