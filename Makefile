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

# Slow soaks, then every scenario in chaos/; the deliberately broken one must fail.
chaos: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m slow tests
	@set -e; for f in chaos/*.toml; do \
	  case $$f in \
	    *broken*) if $(VENV)/bin/lineagerun chaos run $$f --quiet; then echo "$$f should have failed"; exit 1; fi ;; \
	    *) $(VENV)/bin/lineagerun chaos run $$f ;; \
	  esac; \
	done

bench: $(STAMP)
	$(PY) bench/control_store.py
	$(PY) bench/core.py
	$(PY) bench/objects.py
	$(PY) bench/transfer.py
	$(PY) bench/state.py

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

check-protos: $(STAMP)
	$(PY) scripts/gen_protos.py --check

clean:
	rm -rf $(VENV) build *.egg-info
