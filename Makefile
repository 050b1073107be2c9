# opsguard.anqicms — the two commands a newcomer needs:
#   make demo   the main job on the built-in test fleet
#   make test   every test layer, failing fast (the four quick ones in two lanes, then the scenarios)
#   make test-quick   the same without the scenarios (no test fleet), for iterating
#   make docs   the collection's HTML documentation in .build/docs/html
# Both prepare what they need by themselves (hacking/setup.sh) and skip what is already there.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
ROOT := $(CURDIR)
VENV ?= $(ROOT)/.venv
PYTHON_VERSION ?= 3.11
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.collections
export PATH := $(VENV)/bin:$(PATH)
ANSIBLE_TEST := $(ROOT)/hacking/ansible-test.sh
LAYER = @$(ROOT)/hacking/layer.sh
# pytest-xdist workers for the scenario layer (1 = one process, in file order); every worker brings up fleets of
# its own (lab names <OPSGUARD_LAB_NAME>-wN), whole files at a time (the files that share the deployed demo topology
# together: tests/scenarios/conftest.py). 3 on 2 vCPUs: the scenarios also wait on real timings (alert rules, network
# timeouts, graceful stops), which left the CPU 22 % idle with 2 workers and 9 % with 3 (docs/testing.md).
SCENARIO_WORKERS ?= 3
SCENARIO_XDIST = $(if $(filter-out 0 1,$(SCENARIO_WORKERS)),-n $(SCENARIO_WORKERS) --dist loadfile --no-loadscope-reorder)
export OPSGUARD_LAYER_LOG := $(ROOT)/.build/layers.log

.PHONY: help setup test test-quick quick-lane-a quick-lane-b scenario-prep fleet-images sanity lint units integration scenarios standin demo demo-down build docs clean

help:
	@echo "make demo       run the main job on the built-in test fleet (root)"
	@echo "make demo-down  tear the demo fleet down"
	@echo "make test       sanity -> lint | units -> integration | prepare (lanes, QUICK_LANES=1: one), then scenarios"
	@echo "                (SCENARIO_WORKERS=N runs scenario files on N parallel workers; default $(SCENARIO_WORKERS))"
	@echo "make test-quick the same without the scenarios (no test fleet), for iterating"
	@echo "make setup      only prepare .venv, Debian packages and the collection link"
	@echo "make build      build the collection tarball"
	@echo "make docs       build the HTML documentation (antsibull-docs + Sphinx) into .build/docs/html"

setup:
	@PYTHON_VERSION=$(PYTHON_VERSION) $(ROOT)/hacking/setup.sh

# The four quick layers run in two lanes side by side, sanity -> lint and units -> integration (QUICK_LANES=1: one
# after the other). Neither lane uses both vCPUs all the time: 449 s in one lane, 310 s in two, measured. Each layer's
# output is printed as one block when it ends; the second lane has an ansible-test mirror of its own (.build/lane-b).
# `make test` also prepares what the scenarios need in a third lane (scenario-prep: the stand-in release and the test
# fleet's host images, mostly downloads and dpkg), so the scenario layer does not start by waiting for them. The
# scenarios start only when all of it passed.
QUICK_LANES ?= 2
LANE_B_MIRROR := $(ROOT)/.build/lane-b

# $(call QUICK_LAYERS,extra targets): the lanes, then the table on failure
define QUICK_LAYERS
	@mkdir -p .build && : > $(OPSGUARD_LAYER_LOG)
	@$(MAKE) --no-print-directory -j$(if $(filter 1,$(QUICK_LANES)),1,$(words x x $(1))) --output-sync=recurse quick-lane-a quick-lane-b $(1) \
	    || { $(ROOT)/hacking/layer.sh --summary; exit 1; }
endef

test: setup
	$(call QUICK_LAYERS,scenario-prep)
	$(LAYER) --note "$(SCENARIO_WORKERS) worker(s)" scenarios $(MAKE) --no-print-directory scenarios
	@$(ROOT)/hacking/layer.sh --summary

test-quick: setup
	$(call QUICK_LAYERS,)
	@$(ROOT)/hacking/layer.sh --summary

# The lanes (used by test and test-quick): a failed layer leaves the table to them (OPSGUARD_LAYER_LANE).
quick-lane-a quick-lane-b scenario-prep: export OPSGUARD_LAYER_LANE := 1
quick-lane-b: export OPSGUARD_MIRROR := $(LANE_B_MIRROR)

quick-lane-a:
	$(LAYER) sanity $(MAKE) --no-print-directory sanity
	$(LAYER) lint   $(MAKE) --no-print-directory lint

quick-lane-b:
	$(LAYER) units       $(MAKE) --no-print-directory units
	$(LAYER) integration $(MAKE) --no-print-directory integration

scenario-prep:
	$(LAYER) prepare $(MAKE) --no-print-directory fleet-images standin

# The test fleet's host images and local apt repository (tests/lab/image.py; cached under .build/lab). Only root runs
# the scenarios (tests/scenarios/conftest.py skips them for other users), so only root builds them.
fleet-images:
	@if [ "$$(id -u)" = 0 ]; then $(VENV)/bin/python tests/lab/image.py build; \
	 else echo "not root: no fleet images (the scenarios need root)"; fi

sanity:
	$(ANSIBLE_TEST) sanity --venv --python $(PYTHON_VERSION) --color no
	$(VENV)/bin/antsibull-changelog lint
	$(VENV)/bin/antsibull-docs lint-collection-docs --plugin-docs .
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests/roles tests/docs tests/playbooks
	$(ROOT)/hacking/check-package.sh
	$(ROOT)/hacking/check-ee.sh
	$(ROOT)/hacking/promtool.sh --sanity

lint:
	$(VENV)/bin/ansible-lint --profile production --offline --nocolor

units:
	$(ANSIBLE_TEST) units --venv --python $(PYTHON_VERSION) --color no

integration:
	$(ANSIBLE_TEST) integration --local --python $(PYTHON_VERSION) --color no --allow-destructive

scenarios: standin
	$(VENV)/bin/python -m pytest -p no:cacheprovider -ra --durations=30 $(SCENARIO_XDIST) tests/standin tests/lab tests/scenarios

standin:
	@tests/standin/build.sh

docs: setup
	@$(ROOT)/hacking/docs/build.sh

build: setup
	$(VENV)/bin/ansible-galaxy collection build --force --output-path .build/dist
	@ls -l .build/dist/opsguard-anqicms-*.tar.gz

demo: setup standin
	@hacking/demo.sh

demo-down: setup
	@hacking/demo.sh --down

clean:
	rm -rf .build tests/output reports
