# The developer interface. `make run` starts the system locally, `make test`
# checks everything. Kubernetes targets are in their own section below.

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
# Every module of the workspace, as package patterns (github.com/personscore/x/...);
# the chart tests (k8s/test) run in their own target.
ALL_MODULES := $(shell $(GO) list -m -f '{{.Path}}/...' 2>/dev/null)
MODULES     := $(filter-out github.com/personscore/k8s/%,$(ALL_MODULES))
FUZZTIME   ?= 10s
# Packages that hold Go fuzz targets; each target runs for FUZZTIME in `make test`.
FUZZ_DIRS  := $(shell grep -rl --include='*_test.go' '^func Fuzz' services | xargs -r -n1 dirname | sort -u)

.PHONY: help build run test vet unit fuzz test-short clean

help:
	@echo "make run    build and start localmongo, person (:8080) and score (:8081) in the foreground"
	@echo "make test   vet, unit + integration + end-to-end tests, bounded fuzzing, chart tests"
	@echo "make build  build the binaries into bin/"

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/localmongo ./services/localmongo/cmd/localmongo
	CGO_ENABLED=0 $(GO) build -o $(BIN)/person ./services/person/cmd/person
	CGO_ENABLED=0 $(GO) build -o $(BIN)/score ./services/score/cmd/score
	CGO_ENABLED=0 $(GO) build -o $(BIN)/stack ./services/stack/cmd/stack

run: build
	$(BIN)/stack -bin $(BIN) -data $(CURDIR)/.data/mongo

test: vet unit fuzz test-charts

vet:
	$(GO) vet $(ALL_MODULES)

# Unit, integration (real RabbitMQ, embedded FerretDB) and end-to-end tests.
unit:
	$(GO) test -count=1 -timeout 20m $(MODULES)

fuzz:
	@set -e; for dir in $(FUZZ_DIRS); do \
	  for target in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/'); do \
	    echo "fuzz $$dir $$target for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; \
	done

clean:
	rm -rf $(BIN) .data

# Load and replication-lag benchmark (docs/BENCHMARKS.md); not part of make test.
bench-system: build
	$(GO) run ./services/loadgen/cmd/loadgen -suite -profile -bin $(BIN) -step 20s -out docs/bench

# Reliability suite (docs/RELIABILITY.md): crashes, outages, bad input.
chaos:
	$(GO) test -tags chaos -count=1 -timeout 30m -v ./services/stack/chaos/...

# --- kubernetes (charts, kind, skaffold) ---
# --- end kubernetes ---
