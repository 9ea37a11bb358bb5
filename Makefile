# The README's commands. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: demo test test-fast lint app sysdeps install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Debian packages the browser and PostgreSQL tests use; installed when we may (root), skipped
# with a note otherwise (those tests then skip and say why).
sysdeps:
	@bash .ci/sysdeps.sh

demo: $(STAMP)
	$(VENV)/bin/avgen demo --run-dir $(RUN_DIR)

test: $(STAMP) sysdeps
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy avio avtrain av_model audio_codec eval human_eval_app

app: $(STAMP)
	$(VENV)/bin/avgen app

clean:
	rm -rf $(VENV) runs .pytest_cache
