# napari-glandseg: set-up, demo and tests on a fresh Debian machine (see README).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEB_PACKAGES := xvfb libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 \
	libxcb-cursor0 libdbus-1-3 libfontconfig1 libgl1 libegl1 libglib2.0-0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

LATEST ?= .venv-latest
LOCK := requirements/lock.txt

.PHONY: setup system-packages demo test test-fast test-latest latest-venv lock check-lock run-tests bench lint clean

system-packages:
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEB_PACKAGES); \
	fi

# The tool's own set-up installs exactly the versions of $(LOCK) (every package, torch and its
# CUDA wheels included), the set the suite last passed with; setup.cfg keeps loose ranges for
# people who `pip install` the plugin into their own napari.
$(BIN)/.installed: setup.cfg pyproject.toml $(LOCK)
	$(PY) scripts/lock.py check
	$(MAKE) system-packages
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[all,testing]"
	@# napari 0.9 deprecates PyQt5 and qtpy prefers it when both are installed: drop it from old venvs
	$(BIN)/python -m pip uninstall -q -y PyQt5 PyQt5-Qt5 PyQt5-sip 2>/dev/null || true
	$(PY) scripts/lock.py verify $(BIN)/python
	touch $@

check-lock:
	$(PY) scripts/lock.py check

# A second venv from setup.cfg's ranges alone (today's releases, no lock).
latest-venv:
	$(MAKE) system-packages
	rm -rf $(LATEST)
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q -e ".[all,testing]"
	$(LATEST)/bin/python -m pip uninstall -q -y PyQt5 PyQt5-Qt5 PyQt5-sip 2>/dev/null || true
	$(PY) scripts/lock.py diff $(LATEST)/bin/python

setup: $(BIN)/.installed

# Opens the bundled sample slide in napari with the plugin docked; with no display, runs the
# headless equivalent (glandseg segment on the bundled RINGS prostate sample: about a minute on
# two cores, progress lines as it goes) and says what it wrote and how to open it.
demo: setup
	@if [ -n "$$DISPLAY" ] || [ -n "$$WAYLAND_DISPLAY" ]; then \
		$(BIN)/python -m napari_glandseg.demo; \
	else \
		echo "No display: running the headless demo (glandseg segment on the bundled RINGS prostate sample)"; \
		$(BIN)/python -m napari_glandseg.demo --headless --out demo_out; \
	fi

# Everything offscreen; then the screenshot test on a real X server (pytest-xvfb starts Xvfb),
# since Qt's offscreen platform gives the napari canvas no OpenGL to draw with.
test: setup
	$(MAKE) run-tests TEST_BIN=$(BIN)

# The suite against the newest releases setup.cfg admits (CI runs `make test`, with the lock).
test-latest: latest-venv
	$(MAKE) run-tests TEST_BIN=$(LATEST)/bin

# Remake the lock: a venv from the ranges, the whole suite on it, and only then the lock.
lock: latest-venv
	$(MAKE) run-tests TEST_BIN=$(LATEST)/bin
	$(PY) scripts/lock.py write $(LATEST)/bin/python

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow"

run-tests:
	$(TEST_BIN)/ruff check src tests training benchmarks scripts
	QT_QPA_PLATFORM=offscreen $(TEST_BIN)/python -m pytest -q
	QT_QPA_PLATFORM=xcb $(TEST_BIN)/python -m pytest -q tests/widgets/test_screenshot.py

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b; done

lint: setup
	$(BIN)/ruff check src tests training benchmarks scripts

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info src/*.egg-info .pytest_cache
