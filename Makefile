# The README's commands. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: demo test test-fast lint lock app sysdeps install clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
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

# Re-resolve every dependency at its newest allowed version in a scratch venv and write the
# result to constraints.txt; then run `make test` before committing it.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --upgrade --quiet pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,3p' constraints.txt; .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

app: $(STAMP)
	$(VENV)/bin/avgen app

clean:
	rm -rf $(VENV) runs .pytest_cache
