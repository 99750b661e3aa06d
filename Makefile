# `make repro` sets everything up and runs the default pipeline; `make test` runs the tests.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup data repro test report bench seeds robust experiments clean

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# Every default corpus into data/raw/ (sha256-checked; docs/data.md). Only HateSpeech.csv is required; a
# missing other corpus is reported here, and pretrain_corpus then stops naming it. DATA="sentnob_train sentnob_val sentnob_test" fetches (and requires) those.
data: setup
	$(PY) scripts/fetch_data.py $(if $(DATA),--only $(DATA))

repro: data
	$(VENV)/bin/dvc repro

# Two workers, each test file on one (module fixtures such as test_remote's pipeline run once); the
# slowest tests are listed at the end, so a CI log shows where the time goes.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

# The default pipeline on 4 real datasets (../shared/data) x 3 seeds + TF-IDF and predecessor-style baselines,
# mean ± std over seeds -> bench/RESULTS.md: several hours on 2 cores (one run ~20-25 min). RESULTS is rewritten
# after every run; RESUME=1 keeps the runs already finished (after an interruption) and runs the rest.
bench: setup
	$(PY) -m bench.run_bench $(if $(RESUME),--resume)

# Seed noise of the default pipeline (seeds 42 43 44, and the split held fixed) -> bench/SEEDS.md
seeds: data
	$(PY) -m bench.run_seeds

# Bad-input and kill-and-recover cases -> bench/ROBUSTNESS.md
robust: setup
	$(PY) scripts/robust.py

# Queue the planned experiments (scripts/queue_experiments.py) as named DVC experiments; nothing runs
# until `dvc queue start -j 1`. ONLY="kd_v1 kd_v2" queues some; DRY_RUN=1 prints the commands.
experiments: setup
	$(PY) scripts/queue_experiments.py $(if $(ONLY),--only $(ONLY)) $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf data/prepared models

# Markdown review against BASE (a git revision): per-stage table with seed noise, full dvc metrics/params
# diff, PNG plots in report_plots/ beside report.md (what CML uploads with the comment).
BASE ?= HEAD
report: setup
	$(PY) scripts/report.py $(BASE) --out report.md
	@echo "wrote report.md and report_plots/ (against $(BASE))"
