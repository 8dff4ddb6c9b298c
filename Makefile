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

bench: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m benchmarks.run_all

clean:
	rm -rf results .snakemake
