# gridmap — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench db clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## make demo: install, run the main job on the bundled Shanghai sample into out/ (no database needed), print how to open the web pages
demo: $(STAMP)
	$(VENV)/bin/gridmap plan geodata/sample_data/shanghai_bund --out out
	@echo "Web pages on the sample: bash scripts/ensure_postgres.sh && $(VENV)/bin/gridmap demo-web"
	@echo "  (loads the sample into GRIDMAP_DATABASE_URL, prints a password per demo user, serves http://127.0.0.1:8000/login;"
	@echo "   background jobs need $(VENV)/bin/gridmap worker in a second terminal)"

## make test: install, lint (ruff) and type-check (mypy), make sure PostgreSQL 15 + PostGIS run (installing/starting them), run pytest
test: $(STAMP)
	$(VENV)/bin/ruff check gridmap geodata maps api tests bench migrations
	$(VENV)/bin/mypy
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_browser.sh
	$(PY) -m pytest -q -p no:cacheprovider

## make bench: the benchmarks against their anchors (spopt, OR-Tools …); prints figures
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	bash scripts/ensure_postgres.sh
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## make db: migrate the database at GRIDMAP_DATABASE_URL to the newest schema
db: $(STAMP)
	$(VENV)/bin/gridmap db upgrade

clean:
	rm -rf out $(VENV) *.egg-info
