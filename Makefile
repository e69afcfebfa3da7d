# CIU Twin — the two commands: `make demo` and `make test`.
# Both set up everything themselves (virtualenv, packages, PostGIS) and are idempotent.
SHELL := /bin/bash
VENV ?= .venv
CIU := $(VENV)/bin/ciu
PY := $(VENV)/bin/python

.PHONY: help setup setup-test demo test bench bench-model db-start db-stop clean

help:
	@echo "make demo   build the sample twin in a local PostGIS and write its 3D view"
	@echo "make test   run the test suite on a real PostGIS"
	@echo "make bench  run the benchmarks (results in bench/results/)"

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --browser

demo: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) sample build
	@$(CIU) info
	@$(CIU) view --out out/sample-3d.html

test: setup-test
	@$(VENV)/bin/pytest -q

bench: setup
	@bash scripts/setup.sh --gdal
	@$(PY) -m bench.build

db-start: setup
	@$(CIU) db start

db-stop:
	@$(CIU) db stop

clean:
	rm -rf out .pytest_cache

# tower-model benchmarks on real data (results in bench/results/model-*.json, table in docs/benchmarks.md)
bench-model: setup
	@$(PY) -m bench.model
