# `make repro` sets everything up and runs the default pipeline; `make test` runs the tests.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup data repro test report clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

data: setup
	$(PY) scripts/fetch_data.py

repro: data
	$(VENV)/bin/dvc repro

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf data/prepared models

# Markdown review report: metrics, params and plots diff against BASE (a git revision).
BASE ?= HEAD
report: setup
	$(PY) scripts/report.py $(BASE) > report.md
	@echo "wrote report.md (against $(BASE))"
