# The README's commands: `make demo`, `make test` and `make test-all` (what CI runs). Each creates
# .venv through the one install script.
VENV ?= .venv
BIN := $(VENV)/bin
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test test-all services lint docs browser-deps check-py310 test-gpu clean

install:
	bash scripts/install.sh $(VENV)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	bash -n slurm/local-cluster.sh scripts/local-containers.sh

# The documentation site (MkDocs); warnings are errors, the CLI reference is generated from the app.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Headless Chromium for the `browser` tests (Debian's package). Installed when missing and we are
# root (CI); elsewhere the tests skip, except under CI=true where a missing browser fails them.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } \
	  || echo "chromium not installed: browser tests will be skipped"

# pyproject promises Python 3.10: compile and import-check medtl under 3.10 when the machine has it.
check-py310:
	bash .ci/check-py310

test: lint check-py310 docs browser-deps
	$(BIN)/pytest -q

# Everything that can run on this machine: the slurm, container, browser and slow tests too, against a private
# SLURM cluster and Docker daemon that this target installs (Debian packages, once) and starts, and
# the project's own image built from the Dockerfile. `gpu` tests run only where CUDA is. pytest's
# exit code 5 ("no tests ran") is not a failure.
export MEDTL_SLURM_DIR ?= /tmp/medtl-slurm
export MEDTL_CONTAINERS_DIR ?= /var/tmp/medtl-containers
test-all: lint check-py310 docs browser-deps services
	@markers=$$($(BIN)/python -c 'import torch; print("" if torch.cuda.is_available() else "not gpu")'); \
	rc=0; SLURM_CONF=$(MEDTL_SLURM_DIR)/etc/slurm.conf DOCKER_HOST=unix://$(MEDTL_CONTAINERS_DIR)/run/docker.sock \
	  $(BIN)/pytest -q --durations=15 -m "$$markers" || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

services: install
	bash slurm/local-cluster.sh start
	bash scripts/local-containers.sh start
	bash scripts/local-containers.sh image

# Tests marked `gpu` (AMP, channels_last, compile) need a CUDA device.
test-gpu: install
	$(BIN)/pytest -q -m gpu

clean:
	rm -rf demo runs .site .pytest_cache .ruff_cache
