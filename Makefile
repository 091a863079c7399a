# The README's two commands: `make demo` and `make test`. Both create .venv through the one install script.
VENV ?= .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test lint check-py310 test-gpu clean

install:
	bash scripts/install.sh $(VENV)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

# pyproject promises Python 3.10: compile and import-check medtl under 3.10 when the machine has it.
check-py310:
	bash .ci/check-py310

test: lint check-py310
	$(BIN)/pytest -q

# Tests marked `gpu` (AMP, channels_last, compile) need a CUDA device.
test-gpu: install
	$(BIN)/pytest -q -m gpu

clean:
	rm -rf demo runs .pytest_cache .ruff_cache
