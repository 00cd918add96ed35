# flux — every task a developer or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
PIP       := $(PY) -m pip --disable-pip-version-check -q
CARGO     ?= cargo
CBINDGEN_VERSION := 0.29.4
CARGO_BIN := $(HOME)/.cargo/bin
export PATH := $(CARGO_BIN):$(PATH)

.PHONY: help
help:  ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install 'maturin>=1.5,<2' 'pytest>=8' pytest-timeout hypothesis ruff mypy \
		'django>=4.2' djangorestframework 'fastapi>=0.100' 'starlette>=0.27' httpx httpx2 'flask>=2.3' uvicorn gunicorn waitress \
		redis rich prometheus-client
	touch $@

.PHONY: venv
venv: $(VENV)/.ready  ## Create the local virtualenv with the build and test tools

.PHONY: build-dev
build-dev: venv  ## Build the native module (release) into the virtualenv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release -q

.PHONY: demo
demo: build-dev  ## Build flux and run its demo on the embedded store
	$(PY) -m flux demo

.PHONY: redis-server
redis-server:  ## Install redis-server (and chromium, tmux for the dashboard tests) when missing
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: test
test: test-rust test-python test-c header-check  ## Run everything CI runs

.PHONY: test-rust
test-rust: redis-server  ## Rust tests (core alone, then the workspace)
	$(CARGO) test --workspace -q

.PHONY: test-python
test-python: build-dev redis-server  ## Python tests against the built module
	$(PY) -m pytest -q

.PHONY: test-c
test-c: build-dev redis-server  ## C and C++ programs against libflux (sanitizers, valgrind)
	bash tests/c/run.sh

.PHONY: header
header:  ## Regenerate include/flux.h with the pinned cbindgen
	@command -v cbindgen >/dev/null && cbindgen --version | grep -q $(CBINDGEN_VERSION) || \
		$(CARGO) install --locked --quiet cbindgen --version $(CBINDGEN_VERSION)
	cbindgen --quiet --config ffi/cbindgen.toml --crate flux-ffi --output include/flux.h ffi

.PHONY: header-check
header-check: header  ## Fail if include/flux.h is not what the code generates
	git diff --exit-code -- include/flux.h

.PHONY: lint
lint: venv  ## rustfmt, clippy -D warnings, ruff, stub check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p flux-ffi --no-default-features --features python -- -D warnings
	$(VENV)/bin/ruff check flux tests benches
	$(VENV)/bin/ruff format --check flux tests benches
	$(PY) -m mypy.stubtest flux._flux

.PHONY: bench
bench: build-dev redis-server  ## Benchmarks: criterion core, Python vs other limiters, C ABI
	$(CARGO) bench -p flux-core --bench core
	bash benches/python/run.sh
	bash tests/c/bench.sh

.PHONY: clean
clean:  ## Remove build products and the virtualenvs
	$(CARGO) clean
	rm -rf $(VENV) .bench-venv .bench-venv-fluxlimiter
