# Two commands on a fresh machine with Python 3.11, git and apt: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
DEMO ?= .demo
LISTEN ?= 127.0.0.1:9100

.PHONY: run test lint typecheck imports unit bench schemas clean demo-remote demo-drift

# `make run` installs what the daemon needs; `make test` adds the test tools on top.
$(RUN_STAMP): pyproject.toml
	@echo "installing reconciler into $(VENV) (the first time takes a minute or two)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[engine]'
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[engine,kubernetes,test]'
	touch $@

## run: start the daemon on the local executor, reconciling a demo remote made from sample-repo/
# sample-repo's stacks declare OpenTofu, and what `make run` installs is the bundled Terraform
# (the `engine` extra): without `tofu` on PATH they run Terraform, and their logs say so.
run: $(RUN_STAMP) demo-remote
	$(VENV)/bin/reconciler run \
	  --repo "file://$(CURDIR)/$(DEMO)/remote.git" --branch main \
	  --executor local --state-dir "$(DEMO)/state" --secrets-dir "$(DEMO)/secrets" \
	  --engine-fallback terraform --interval 10s --listen $(LISTEN)

demo-remote: $(RUN_STAMP)
	bash scripts/demo-remote.sh "$(DEMO)"

## demo-drift: while `make run` runs, change the demo network by hand (the next drift plan finds it)
demo-drift:
	bash scripts/demo-drift.sh "$(DEMO)"

## test: install what the tests need (Python and system packages), then run every check
test: $(STAMP)
	bash scripts/install-test-deps.sh
	$(MAKE) --no-print-directory lint typecheck imports unit

lint: $(STAMP)
	$(VENV)/bin/ruff check reconciler tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

imports: $(STAMP)
	$(VENV)/bin/lint-imports

unit: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$(CURDIR)/.tools/bin:$$PATH" $(VENV)/bin/pytest -n 2 -q

bench: $(STAMP)
	$(PY) -m bench

schemas: $(STAMP)
	$(VENV)/bin/reconciler schema --out schemas

clean:
	rm -rf $(VENV) $(DEMO) .tools .pytest_cache .mypy_cache .ruff_cache
