# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.orbitset-setup
OUT ?= demo-out

.PHONY: setup demo test test-all smoke bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

demo: $(STAMP)
	$(PY) -m orbitset demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

smoke: $(STAMP)
	$(PY) -m orbitset smoke --out runs/smoke

bench: $(STAMP)
	$(PY) benchmarks/render.py
	$(PY) benchmarks/loader.py

clean:
	rm -rf $(OUT) runs .pytest_cache
