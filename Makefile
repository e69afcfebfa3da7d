# CIU Twin — the two commands: `make demo` and `make test`.
# Both set up everything themselves (virtualenv, packages, PostGIS) and are idempotent.
SHELL := /bin/bash
VENV ?= .venv
CIU := $(VENV)/bin/ciu
PY := $(VENV)/bin/python

.PHONY: help setup setup-test demo test bench bench-build bench-model db-start db-stop clean

help:
	@echo "make demo   build the sample twin, write its 3D view, train a model, serve API + dashboard"
	@echo "make demo-nyc   build Manhattan from ../shared/data/nyc, train a model on bike arrivals, serve API + dashboard"
	@echo "make test   run the test suite on a real PostGIS"
	@echo "make bench  run the benchmarks (results in bench/results/)"

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --browser

# DEMO_SERVE=0 stops after the build (summary and 3D view) without training or serving.
DEMO_SERVE ?= 1
# what make demo-nyc forecasts: bike_arrivals, bike_departures, taxi_pickups or taxi_dropoffs
NYC_TARGET ?= bike_arrivals

demo: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) sample build
	@$(CIU) info
	@$(CIU) view --out out/sample-3d.html
	@if [ "$(DEMO_SERVE)" = 1 ]; then bash scripts/demo-serve.sh people; fi

test: setup-test
	@$(VENV)/bin/pytest -q

# Benchmarks, each beside a peer in the same run; results in bench/results/, summary in docs/benchmarks.md.
# The model benchmarks train on real data for about an hour: `make bench-model`.
bench: bench-build bench-ingest bench-api bench-viz
	@$(PY) -m bench.report

bench-build: setup
	@$(PY) -m bench.build

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

# Manhattan is its own twin: database `manhattan` of the same embedded cluster (the sample city
# stays in `ciu`); `CIU_DB_NAME=manhattan ciu …` reaches it afterwards.
demo-nyc: export CIU_DB_NAME = manhattan
demo-nyc: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) build nyc $(if $(NYC_DATA),--data $(NYC_DATA),)
	@$(CIU) info
	@if [ "$(DEMO_SERVE)" = 1 ]; then bash scripts/demo-serve.sh $(NYC_TARGET); fi

bench-ingest: setup
	@bash scripts/setup.sh --gdal
	@$(PY) -m bench.ingest


# The dashboard (operations at /, planner at /planner) and its benchmark (bench/results/viz.json).
.PHONY: dashboard bench-viz
dashboard: setup
	@$(CIU) db start
	@$(CIU) db migrate
	@$(CIU) dashboard serve

bench-viz: setup-test
	@$(PY) -m bench.viz

# scenario latency, 8 planners beside one, on the trained twin of `make demo` (CIU_DB_NAME=manhattan: demo-nyc's)
.PHONY: bench-scenarios
bench-scenarios: setup
	@$(CIU) db start
	@$(PY) -m bench.scenarios
	@$(PY) -m bench.report

# tower-model benchmarks on real data (results in bench/results/model-*.json, table in docs/benchmarks.md)
bench-model: setup
	@$(PY) -m bench.model
	@$(PY) -m bench.report
