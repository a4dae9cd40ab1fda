# One virtual environment for everything; `make demo` and `make test` set it up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Train on scikit-learn's bundled diabetes data (no download) and print the fit summary, pack the model
# for the integer runtime, and predict five rows with the C library (compiled on first use).
demo: setup
	$(BIN)/direct-train --output model.direct --plot model.png
	$(BIN)/direct-export --model model.direct model.bin
	$(BIN)/python -c "from sklearn.datasets import load_diabetes; import numpy as np; \
	    np.savetxt('demo-rows.csv', load_diabetes().data[:5], delimiter=',')"
	$(BIN)/direct-run model.bin demo-rows.csv --engine c

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) model.direct model.png model.bin demo-rows.csv
