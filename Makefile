# Every target installs what it needs into .venv first, so a fresh machine with
# only Python 3.11 and make can run `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test chaos bench protos check-protos clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m lineagerun.cli.main demo

test: $(STAMP) check-protos
	$(PY) -m pytest -q -p no:cacheprovider tests

chaos: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m slow tests

bench: $(STAMP)
	$(PY) bench/control_store.py
	$(PY) bench/objects.py

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

check-protos: $(STAMP)
	$(PY) scripts/gen_protos.py --check

clean:
	rm -rf $(VENV) build *.egg-info
