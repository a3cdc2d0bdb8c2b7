# jacobinerf_ns — the two commands: `make demo` and `make test` (both create .venv when it is missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.jacobinerf-installed
SCENE ?= data/synth-room
OUT ?= outputs
RUN := $(OUT)/demo/jacobinerf-tiny/demo
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test lint format bench clean-demo

# The install that works on these machines (../shared/ENVIRONMENT.md): torch from the local wheel, then the package.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest -q

# Generate the default scene, train the CPU preset, evaluate on the held-out views, render the test views, propagate
# one click per class from training view 0 to every test view.
demo: venv
	@start=$$(date +%s); \
	set -e; \
	if [ ! -f $(SCENE)/traj_w_c.txt ]; then $(BIN)/jn-synth --output-dir $(SCENE); fi; \
	rm -rf $(RUN); \
	$(BIN)/ns-train jacobinerf-tiny --data $(SCENE) --output-dir $(OUT) --experiment-name demo --timestamp demo; \
	$(BIN)/ns-eval --load-config $(RUN)/config.yml --output-path $(RUN)/eval.json; \
	$(BIN)/ns-render dataset --load-config $(RUN)/config.yml --split test --output-path $(RUN)/renders \
		--rendered-output-names rgb depth; \
	$(BIN)/jn-propagate --load-config $(RUN)/config.yml --setting sparse --target semantic --method 2d-cos \
		--output-path $(RUN)/propagation.json --render-output-path $(RUN)/propagation; \
	$(BIN)/python -m jacobinerf_ns.scripts.summary --eval-json $(RUN)/eval.json --start-time $$start \
		--propagation-json $(RUN)/propagation.json \
		--paths scene=$(SCENE) run=$(RUN) config=$(RUN)/config.yml renders=$(RUN)/renders \
		propagation=$(RUN)/propagation

bench: venv
	$(BIN)/python benchmarks/train_speed.py

clean-demo:
	rm -rf $(SCENE) $(OUT)/demo
