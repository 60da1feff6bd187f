# Two entry points: `make demo` (a worker plus a producer on the embedded broker) and `make test`.
# Both create .venv and install the core and every plugin under plugins/ into it first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

.PHONY: install test demo lint clean

$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install --no-build-isolation -e '.[test]' $(foreach dir,$(PLUGIN_DIRS),-e '$(dir)[test]')
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	cd examples && ../$(PY) demo.py

lint: install
	$(PIP) install ruff mypy
	$(VENV)/bin/ruff check kernel plugins tests
	$(VENV)/bin/mypy kernel

clean:
	rm -rf $(VENV) build *.egg-info plugins/*/*.egg-info
