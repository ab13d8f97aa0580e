# Two commands for a new machine:
#   make serve   set up, publish a test-pattern stream and show it at http://127.0.0.1:8080/
#   make test    set up (system packages included) and run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test check bench setup system-deps runtime-deps clean

$(BIN)/framebus: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -c constraints.txt
	touch $@

setup: $(BIN)/framebus

system-deps:
	./scripts/system-deps.sh test

runtime-deps:
	./scripts/system-deps.sh runtime

serve: runtime-deps setup
	$(BIN)/framebus serve --http 127.0.0.1:8080

check: setup
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

test: system-deps setup check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: system-deps setup
	$(BIN)/pip install -q -e '.[dev,bench]' -c constraints.txt
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
