# napari-glandseg: set-up, demo and tests on a fresh Debian machine (see README).
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEB_PACKAGES := xvfb libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 \
	libxcb-cursor0 libdbus-1-3 libfontconfig1 libgl1 libegl1 libglib2.0-0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-packages demo test bench lint clean

system-packages:
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEB_PACKAGES); \
	fi

$(BIN)/.installed: setup.cfg pyproject.toml
	$(MAKE) system-packages
	[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[all,testing]" $(TORCH_PINS)
	@# napari 0.9 deprecates PyQt5 and qtpy prefers it when both are installed: drop it from old venvs
	$(BIN)/python -m pip uninstall -q -y PyQt5 PyQt5-Qt5 PyQt5-sip 2>/dev/null || true
	touch $@

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
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q
	QT_QPA_PLATFORM=xcb $(BIN)/python -m pytest -q tests/widgets/test_screenshot.py

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b; done

lint: setup
	$(BIN)/ruff check src tests training benchmarks scripts

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
