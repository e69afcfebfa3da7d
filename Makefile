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
	@$(PY) -m bench.report

db-start: setup
	@$(CIU) db start

db-stop:
	@$(CIU) db stop

clean:
	rm -rf out .pytest_cache

# The prediction API: serve it, and benchmark it beside tipg (bench/results/api.json).
.PHONY: serve bench-api
serve: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) serve

bench-api: setup
	@bash scripts/setup.sh --wrk
	@test -x .venv-tipg/bin/python || python3.11 -m venv .venv-tipg
	@.venv-tipg/bin/python -c "import tipg, uvloop" 2>/dev/null || .venv-tipg/bin/python -m pip install -q "tipg>=1.0" "uvicorn[standard]"
	@$(PY) -m bench.api
# -- real cities ----------------------------------------------------------------
.PHONY: demo-nyc bench-ingest
NYC_DATA ?=

demo-nyc: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) build nyc $(if $(NYC_DATA),--data $(NYC_DATA),)
	@$(CIU) info

bench-ingest: setup
	@bash scripts/setup.sh --gdal
	@$(PY) -m bench.ingest

bench: bench-ingest

# The dashboard (operations at /, planner at /planner) and its benchmark (bench/results/viz.json).
.PHONY: dashboard bench-viz
dashboard: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) dashboard serve

bench-viz: setup-test
	@$(PY) -m bench.viz
# tower-model benchmarks on real data (results in bench/results/model-*.json, table in docs/benchmarks.md)
bench-model: setup
	@$(PY) -m bench.model
