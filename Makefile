# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
# The compiled parts (setup.py; optional: without a compiler the formulas run as pure
# Python and the flush reads its log with orjson): the score kernel and the flush's log
# reader.  Editing their sources rebuilds them in place on the next make venv/test/demo.
KERNEL := ingest_worker/scoring/_formulas_c.pyx ingest_worker/scoring/formulas.py ingest_worker/scoring/_source_hash.py \
          ingest_worker/_r1_columns.pyx
KSTAMP := $(VENV)/.kernel-built
DATA   ?= ./data
PYTEST_ARGS ?=

.PHONY: demo test lint bench venv clean browser

venv: $(STAMP) $(KSTAMP)

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@ $(KSTAMP)

$(KSTAMP): $(KERNEL) | $(STAMP)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

browser:
	@bash scripts/ensure_chromium.sh

lint: venv
	$(VENV)/bin/ruff check .

test: venv browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(PY) scripts/demo.py --data $(DATA)

bench: venv
	@for b in $$(ls benchmarks/*.py | grep -v "/_"); do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts build ingest_worker/scoring/_formulas_c.c \
		ingest_worker/scoring/_formulas_c.*.so ingest_worker/_r1_columns.c ingest_worker/_r1_columns.*.so
