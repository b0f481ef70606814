# Two commands do everything on a fresh machine:
#   make demo   installs the project in .venv, then runs the main job end to end on bundled data
#   make test   installs the project in .venv, then runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
XFER := $(VENV)/bin/xfer
DEMO ?= demo

.PHONY: install demo test lint docs clean

install: $(VENV)/.installed

# constraints.txt pins torch and torchvision (see README: Set up and run).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The main job end to end: images -> cached features -> fitted head -> accuracy on held-out images.
demo: install
	$(PY) -m pipelines.demo_data $(DEMO)/digits --per-class 60
	$(XFER) featurize $(DEMO)/digits/train -o $(DEMO)/digits_train.h5
	$(XFER) featurize $(DEMO)/digits/test -o $(DEMO)/digits_test.h5
	$(XFER) info $(DEMO)/digits_train.h5
	$(XFER) fit $(DEMO)/digits_train.h5 --baseline -o $(DEMO)/models/digits.skops
	$(XFER) evaluate $(DEMO)/models/digits.skops $(DEMO)/digits_test.h5 --report $(DEMO)/evaluation.html
	$(XFER) audit $(DEMO)/digits_train.h5 $(DEMO)/digits_test.h5 --report $(DEMO)/audit.html
	$(XFER) predict $(DEMO)/models/digits.skops $(DEMO)/digits/test -o $(DEMO)/predictions.csv

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# docs/cli.md: every command's --help, generated from cli.py (tests/test_docs.py checks it is current).
docs: install
	$(PY) docs/generate_cli.py

clean:
	rm -rf $(DEMO) cache/store-* cache/*.h5
