# Two commands do all set-up on a fresh machine (python3 >= 3.10 with venv is all they assume):
#   make run    create the environment if needed, then `snakemake all` on the default config
#   make test   create the environment if needed, then the whole test suite
# Extra snakemake arguments: make run ARGS="wiseft_figure --forceall" (a target replaces `all`, the
# default target; `snakemake all --cores 2 wiseft_figure` would be an argparse error)

VENV ?= .venv
CORES ?= 2
ARGS ?=
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Offline by default: open_clip must never wait on a model hub (46 s of retries otherwise).
export HF_HUB_OFFLINE := 1

.PHONY: run test env bench clean rehearse

# Snakemake reads --configfile files before the workflow, and stops on a missing or malformed one
# with a traceback or a message that names no file: check them first (one line each).
run: $(STAMP)
	$(BIN)/python -m robustft.config --snakemake-args $(ARGS)
	$(BIN)/snakemake --cores $(CORES) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -ra --durations=25 $(ARGS)

env: $(STAMP)

# Pinned versions (envs/requirements.lock); installed with bytecode compilation, which halves
# `import open_clip` in every job (stack.md). The package itself is installed editable.
$(STAMP): envs/requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r envs/requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

bench: $(STAMP)
	$(BIN)/python bench/suite.py $(ARGS)

# The paper config (config/paper.yaml) built end to end on this machine: fixtures of every dataset
# in its real layout, served from 127.0.0.1, shrunk backbones, every run shortened, in rehearsal/
# (README "Rehearse first"). ARGS: targets instead of `all`, `--configfile my-paper.yaml`, ...
rehearse: $(STAMP)
	$(BIN)/python -m robustft.rehearsal --dir rehearsal --cores $(CORES) $(ARGS)
	$(BIN)/python bench/rehearsal.py rehearsal

clean:
	rm -rf resources results logs benchmarks scratch .snakemake rehearsal
