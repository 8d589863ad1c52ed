# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pmopt margin examples/multi_venue/book.yaml
	$(BIN)/pmopt risk examples/multi_venue/book.yaml
	$(BIN)/pmopt optimize examples/multi_venue/book.yaml --policy examples/multi_venue/policy.yaml

test: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) || \
		echo "warning: chromium is not installed; the report's browser test skips (and fails under CI=true)"
	$(BIN)/python -m pytest
	$(BIN)/ruff check optimizer risk_models tests benchmarks

lint: $(STAMP)
	$(BIN)/ruff check optimizer risk_models tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/margin_eval.py
	$(BIN)/python benchmarks/risk_eval.py

clean:
	rm -rf $(VENV) build *.egg-info
