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
		redis rich prometheus-client websockets
	touch $@

.PHONY: venv
venv: $(VENV)/.ready  ## Create the local virtualenv with the build and test tools

.PHONY: build-dev
build-dev: venv  ## Build the native module (release) into the virtualenv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release -q

# Wheels: built with zig (PyPI's `ziglang`, installed into the virtualenv) linking against an
# old glibc, so that one wheel passes manylinux_2_17 whatever glibc the build machine has; a
# plain build on Debian 12 would need glibc 2.34. WHEEL_ZIG=0 builds without zig and tags
# what the host's glibc allows (checked by maturin's auditwheel either way). Wheel builds use
# their own cargo target directory: zig's linker flags would otherwise invalidate the dev build.
DIST       ?= dist
WHEEL_ZIG  ?= 1
WHEEL_TARGET ?= $(abspath target/wheel)
# abi3 (one wheel for CPython 3.10+) was measured against per-version wheels (`make bench`,
# row "abi3 vs native"); see the README's "Python wheel" section for the numbers and the choice.
WHEEL_FEATURES ?= abi3
MATURIN_WHEEL = PATH=$(abspath $(VENV))/bin:$$PATH CARGO_TARGET_DIR=$(WHEEL_TARGET) \
	$(VENV)/bin/maturin build --release --strip --auditwheel check -i $(PY) \
	$(if $(filter 1,$(WHEEL_ZIG)),--zig --compatibility manylinux_2_17)

$(VENV)/.zig: $(VENV)/.ready
	$(PIP) install 'ziglang>=0.13,<0.18'
	touch $@

.PHONY: wheel
wheel: venv $(if $(filter 1,$(WHEEL_ZIG)),$(VENV)/.zig)  ## Build the flux-ratelimit wheel (manylinux, release) into dist/
	rm -f $(DIST)/flux_ratelimit-*.whl
	$(MATURIN_WHEEL) $(if $(WHEEL_FEATURES),--features $(WHEEL_FEATURES)) -o $(DIST)
	@ls -1 $(DIST)/flux_ratelimit-*.whl

.PHONY: sdist
sdist: venv  ## Build the flux-ratelimit source distribution into dist/
	rm -f $(DIST)/flux_ratelimit-*.tar.gz
	$(VENV)/bin/maturin sdist -o $(DIST)
	@ls -1 $(DIST)/flux_ratelimit-*.tar.gz

.PHONY: sdist-check
sdist-check: sdist  ## Build a wheel from the sdist alone in a fresh virtualenv (slow: a full compile)
	rm -rf target/sdist-check && $(PYTHON) -m venv target/sdist-check/venv
	target/sdist-check/venv/bin/pip --disable-pip-version-check -q wheel --no-deps \
		-w target/sdist-check/out $(DIST)/flux_ratelimit-*.tar.gz
	@ls -1 target/sdist-check/out/flux_ratelimit-*.whl

.PHONY: demo
demo: build-dev  ## Build flux and run its demo on the embedded store
	$(PY) -m flux demo

# apt-get install each of its arguments that is missing (a command name = its package name).
define apt_install_missing
	@missing=""; \
	for tool in $(1); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

.PHONY: redis-server
redis-server:  ## Install redis-server when missing (Rust, Python, C and binding tests use it)
	$(call apt_install_missing,redis-server)

.PHONY: browser-tools
browser-tools:  ## Install chromium and tmux when missing (the dashboard and monitor tests)
	$(call apt_install_missing,chromium tmux)

.PHONY: test
test: test-rust test-python test-c test-install test-bindings test-wheel header-check  ## Run everything CI runs

.PHONY: test-rust
test-rust: redis-server  ## Rust tests (core alone, then the workspace)
	$(CARGO) test --workspace -q

.PHONY: test-python
test-python: build-dev redis-server browser-tools  ## Python tests against the built module
	$(PY) -m pytest -q -m "not packaging"

.PHONY: test-wheel
# Every CPython 3.10+ found (on PATH, or installed by pyenv) gets its own fresh virtualenv.
WHEEL_PYTHONS ?= $(shell for v in 3.10 3.11 3.12 3.13 3.14; do \
	for p in "$$(command -v python$$v)" $(HOME)/.pyenv/versions/$$v*/bin/python$$v; do \
	[ -x "$$p" ] && "$$p" -c 'import venv' 2>/dev/null && { echo "$$p"; break; }; done; done)
test-wheel: wheel  ## Install the wheel in fresh virtualenvs (no cargo on PATH), run its demo
	FLUX_WHEEL_PYTHONS="$(WHEEL_PYTHONS)" $(PY) -m pytest -q -m packaging tests/packaging

.PHONY: test-c
test-c: build-dev redis-server  ## C and C++ programs against libflux (sanitizers, valgrind)
	bash tests/c/run.sh

# Installing the C library: PREFIX is where it will live, DESTDIR a staging root prepended to
# every path written (for packagers); flux.pc and the CMake package name PREFIX, not DESTDIR.
PREFIX  ?= /usr/local
DESTDIR ?=
FLUX_VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
FLUX_MAJOR   := $(word 1,$(subst ., ,$(FLUX_VERSION)))
FLUX_MINOR   := $(word 2,$(subst ., ,$(FLUX_VERSION)))
LIB_DIR      := target/release
I_INC   = $(DESTDIR)$(PREFIX)/include
I_LIB   = $(DESTDIR)$(PREFIX)/lib
I_CMAKE = $(I_LIB)/cmake/flux
SUBST   = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(FLUX_VERSION)|g' \
	-e 's|@MAJOR@|$(FLUX_MAJOR)|g' -e 's|@MINOR@|$(FLUX_MINOR)|g'

.PHONY: lib
lib:  ## Build libflux.so (SONAME libflux.so.MAJOR) and libflux.a into target/release
	$(CARGO) build --release -p flux-ffi
	@# Programs linked in the tree record the SONAME: give the loader that name too.
	ln -sf libflux.so $(LIB_DIR)/libflux.so.$(FLUX_MAJOR)

.PHONY: install
install: lib  ## Install flux.h, flux.hpp, libflux.so/.a, flux.pc, CMake package (PREFIX, DESTDIR)
	install -d $(I_INC) $(I_LIB)/pkgconfig $(I_CMAKE)
	install -m 644 include/flux.h include/flux.hpp $(I_INC)/
	install -m 755 $(LIB_DIR)/libflux.so $(I_LIB)/libflux.so.$(FLUX_VERSION)
	ln -sf libflux.so.$(FLUX_VERSION) $(I_LIB)/libflux.so.$(FLUX_MAJOR)
	ln -sf libflux.so.$(FLUX_MAJOR) $(I_LIB)/libflux.so
	install -m 644 $(LIB_DIR)/libflux.a $(I_LIB)/libflux.a
	$(SUBST) packaging/flux.pc.in > $(I_LIB)/pkgconfig/flux.pc
	$(SUBST) packaging/fluxConfig.cmake.in > $(I_CMAKE)/fluxConfig.cmake
	$(SUBST) packaging/fluxConfigVersion.cmake.in > $(I_CMAKE)/fluxConfigVersion.cmake
	@echo "installed flux $(FLUX_VERSION) into $(DESTDIR)$(PREFIX) (run ldconfig for a system prefix)"

.PHONY: uninstall
uninstall:  ## Remove what make install installed (same PREFIX and DESTDIR)
	rm -f $(I_INC)/flux.h $(I_INC)/flux.hpp $(I_LIB)/libflux.so $(I_LIB)/libflux.so.$(FLUX_MAJOR) \
		$(I_LIB)/libflux.so.$(FLUX_VERSION) $(I_LIB)/libflux.a $(I_LIB)/pkgconfig/flux.pc \
		$(I_CMAKE)/fluxConfig.cmake $(I_CMAKE)/fluxConfigVersion.cmake
	@# The directories flux created, when nothing else lives there; never PREFIX/lib itself.
	@rmdir $(I_CMAKE) 2>/dev/null; rmdir $(I_LIB)/cmake $(I_LIB)/pkgconfig 2>/dev/null; true

.PHONY: test-bindings
test-bindings: build-dev redis-server  ## Go (cgo) and Node (N-API) bindings; one Redis limit from five languages
	bash bindings/run.sh

.PHONY: test-install
test-install:  ## make install into a temp prefix; pkg-config, CMake find_package, SONAME, uninstall
	bash tests/install/run.sh

.PHONY: header
header:  ## Regenerate include/flux.h with the pinned cbindgen
	@command -v cbindgen >/dev/null && cbindgen --version | grep -q $(CBINDGEN_VERSION) || \
		$(CARGO) install --locked --quiet cbindgen --version $(CBINDGEN_VERSION)
	cbindgen --quiet --config ffi/cbindgen.toml --crate flux-ffi --output include/flux.h ffi

.PHONY: header-check
header-check: header  ## Fail if include/flux.h is not what the code generates
	git diff --exit-code -- include/flux.h

.PHONY: lint
lint: build-dev  ## rustfmt, clippy -D warnings, ruff, mypy on flux/, stub check (built module)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p flux-ffi --no-default-features --features python -- -D warnings
	$(VENV)/bin/ruff check flux tests benches
	$(VENV)/bin/ruff format --check flux tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest flux._flux

.PHONY: bench
bench: build-dev redis-server  ## Benchmarks: core, Python vs others, abi3 vs native, C ABI, Go/Node vs C
	$(CARGO) bench -p flux-core --bench core
	bash benches/python/run.sh
	bash benches/python/abi3.sh
	bash tests/c/bench.sh
	bash bindings/bench.sh

.PHONY: clean
clean:  ## Remove build products and the virtualenvs
	$(CARGO) clean
	rm -rf $(VENV) .bench-venv .bench-venv-fluxlimiter $(DIST) bindings/node/build
