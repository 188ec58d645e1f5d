# The two commands of the README's Quick start: `make demo` and `make test`.
# Each works from a clean clone: it creates .venv, installs torch==2.13.0 when no torch is
# present (a user's own CUDA build is kept), then everything else; apt packages when root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := ffmpeg xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
	libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libgl1 libegl1 libfontconfig1 libdbus-1-3 \
	slurm-wlm munge

.PHONY: setup demo test lint system-deps clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "not root: skipping apt packages ($(APT_PACKAGES))"; fi

.stamp-setup: $(VENV)/bin/python pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[napari,cluster,dev]"
	touch .stamp-setup

setup: system-deps .stamp-setup

demo: setup
	$(VENV)/bin/prism-science demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check prism_science training plugins tests benchmarks

clean:
	rm -rf $(VENV) .stamp-setup build dist *.egg-info
