# The two commands of the README.
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test setup bench

run: setup
	.venv/bin/python run_live.py --host $(HOST) --port $(PORT)

test:
	scripts/setup.sh test
	.venv/bin/python -m pytest -q

setup:
	scripts/setup.sh
