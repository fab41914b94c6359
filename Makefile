# Every target sets itself up: a fresh machine needs only Python 3.11 and the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,bench,mbar,dev]"
	touch $(STAMP)

venv: $(STAMP)

# The headline: 10^4 equilibrium alanine-dipeptide samples from the shipped Boltzmann generator, their ESS over 4
# draws, and the reweighted F(phi) and Ramachandran plot beside the MD and umbrella references (about a minute).
demo: $(STAMP)
	$(BIN)/boltzflow demo --out runs/demo/alanine-bg

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --out docs/benchmarks.md

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
