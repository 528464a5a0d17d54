# Two commands do all the set-up on a fresh machine:
#   make run    set up .venv and run the main job (the quickstart study on the local store)
#   make test   set up .venv and run the linter and the tests
# The mpimpy command lives in .venv/bin: `source .venv/bin/activate` puts it on PATH, or use
#   make study STUDY=variation [WORKERS=2] [ARGS="--dry-run"]
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; override for CUDA, e.g. make TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url ..."
TORCH_SPEC ?= torch==2.13.0
# make study: a shipped study's name or a study file, parallel points, more mpimpy options
STUDY ?= quickstart
WORKERS ?= 2
ARGS ?=
# make lab: more JupyterLab options (e.g. --no-browser --port=8889); as root (as many
# containers run) JupyterLab needs --allow-root, added here
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

.PHONY: setup run study ui lab test test-browser browser lint bench bench-cli clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mpimpy)" >/dev/null
	$(PY) -m mpimpy.nbclean --install >/dev/null  # shipped notebooks are saved without outputs
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/mpimpy study run studies/quickstart.yaml --workers 2
	@echo "Compare the runs:   make ui    (MLflow UI on http://127.0.0.1:5000)"
	@echo "Explore by hand:    make lab   (JupyterLab on notebooks/, e.g. explorer.ipynb)"
	@echo "More studies:       make study STUDY=variation, or: source $(VENV)/bin/activate; mpimpy study list"

study: setup
	$(VENV)/bin/mpimpy study run $(STUDY) --workers $(WORKERS) $(ARGS)

ui: setup
	$(VENV)/bin/mpimpy ui

lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(ALLOW_ROOT) $(LAB_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest

# End-to-end tests in headless Chromium (Debian's package; installed here when missing, as root)
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test-browser: setup browser
	$(PY) -m pytest -m browser

# Every benchmark, each printing ratios measured side by side (benchmarks/README.md: what each
# measures, its bound and the last results); about 6 minutes on 2 cores. The memory benchmark
# runs at --m 2000 here (seconds instead of minutes; the same chunks, a tenth of the inputs).
bench: setup
	$(PY) benchmarks/bench_core.py --repeats 2
	$(PY) benchmarks/bench_nn.py
	$(PY) benchmarks/bench_cost.py --repeats 5
	$(PY) benchmarks/bench_encodings.py
	$(PY) benchmarks/bench_memory.py --m 2000
	$(PY) benchmarks/bench_wire.py
	$(PY) benchmarks/bench_wire_solver.py
	$(PY) benchmarks/bench_explorer.py
	$(PY) benchmarks/bench_cli.py

# How fast the mpimpy command answers (--help, study list, validate, --dry-run)
bench-cli: setup
	$(PY) benchmarks/bench_cli.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
