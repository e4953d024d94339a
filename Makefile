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
# Fuzzing runs on Go 1.27.3: Go 1.26's fuzz coordinator can fail a target with a bare
# "context deadline exceeded" when -fuzztime ends while a starved worker is mid-call
# (go.dev/issue/75804, fixed in 1.27); the go command fetches that toolchain from the
# module proxy once per machine.
FUZZ_GO    ?= GOTOOLCHAIN=go1.27.3 $(GO)
# Packages that hold Go fuzz targets; each target runs for FUZZTIME in `make test`.
FUZZ_DIRS  := $(shell grep -rl --include='*_test.go' '^func Fuzz' services | xargs -r -n1 dirname | sort -u)

.PHONY: help build run test vet unit fuzz test-short clean bench bench-system chaos

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

# Unit, integration (real RabbitMQ, the embedded MongoDB-wire store) and end-to-end tests.
unit:
	$(GO) test -count=1 -timeout 20m $(MODULES)

fuzz:
	@set -e; for dir in $(FUZZ_DIRS); do \
	  for target in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/'); do \
	    echo "fuzz $$dir $$target for $(FUZZTIME)"; \
	    $(FUZZ_GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; \
	done

clean:
	rm -rf $(BIN) .data

# Issue 14's benchmark (docs/BENCHMARKS.md): both workloads (200 persons × 3 items, one
# person × 600 items) from 16 clients on both store backends, lag at 200 writes/s,
# store commands per write, a person with 5 against one with 5,000 items; not part of make test.
bench: build
	$(GO) run ./services/loadgen/cmd/loadgen -bench -profile -step 10s -store-duration 3s -bin $(BIN) -concurrency 16 -out docs/bench

# The older, longer suite: rate sweep, resources, start-up, image sizes, profiles.
bench-system: build
	$(GO) run ./services/loadgen/cmd/loadgen -suite -profile -bin $(BIN) -step 20s -out docs/bench

# Reliability suite (docs/RELIABILITY.md): crashes, outages, bad input.
chaos:
	$(GO) test -tags chaos -count=1 -timeout 30m -v ./services/stack/chaos/...

# --- kubernetes (charts, kind, skaffold) ---
# Charts in charts/, cluster add-ons in k8s/, docs in docs/KUBERNETES.md.
# Tool versions are pinned here; Go-installable tools are installed into bin/.
BIN               ?= $(CURDIR)/bin
GO                ?= go
HELM_VERSION      := v3.22.0
KIND_VERSION      := v0.33.0
# skaffold is built from its Go module (k8s/hack/build-skaffold.sh).
SKAFFOLD_VERSION  := v2.16.1
KIND_CLUSTER      ?= personscore
K8S_NAMESPACE     ?= personscore
KUBE_CONTEXT      ?= kind-$(KIND_CLUSTER)
# kubectl for `make up`/`deploy`: the one inside the kind node unless you pass your own
# (e.g. KUBECTL="kubectl --context kind-personscore").
KUBECTL           ?= docker exec -i $(KIND_CLUSTER)-control-plane kubectl --kubeconfig=/etc/kubernetes/admin.conf
include k8s/addons/versions.env
# Image names and tags (PERSON_IMAGE, RABBITMQ_IMAGE, ...): the one place that names them.
include k8s/images/images.env
# skaffold profile for `make dev`: kind (default) or local-node (see skaffold.yaml).
SKAFFOLD_PROFILE  ?= kind

.PHONY: test-charts control-plane k8s-tools images chart-deps up down deploy dev smoke

# With the version stamps of Helm's own release build (its Makefile): the version, and the
# Kubernetes version `helm template`/`lint` assume (1.<client-go minor>; unset, Helm falls
# back to 1.20 and refuses the charts' kubeVersion >=1.29).
HELM_K8S_MINOR    := 37
$(BIN)/helm:
	GOBIN=$(BIN) GOWORK=off GOFLAGS=-mod=mod $(GO) install -trimpath -ldflags "-s -w \
	  -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)" \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(BIN)/kind:
	GOBIN=$(BIN) GOWORK=off GOFLAGS=-mod=mod $(GO) install sigs.k8s.io/kind@$(KIND_VERSION)

# From its Go module with skaffold's own `replace` pins; rebuilt when the version changes.
.PHONY: $(BIN)/skaffold
$(BIN)/skaffold:
	SKAFFOLD_VERSION=$(SKAFFOLD_VERSION) k8s/hack/build-skaffold.sh

# kube-apiserver and etcd built from their Go modules (no binary downloads here);
# rebuilt only when missing or when the pinned version changes.
control-plane:
	k8s/hack/build-control-plane.sh all

k8s-tools: $(BIN)/helm $(BIN)/kind $(BIN)/skaffold

# Chart tests: Helm lint --strict, render + strict decode + policies for default/kind/
# production values, install on a real kube-apiserver + etcd, daemonless image builds.
test-charts: control-plane
	cd k8s/test && $(GO) test -count=1 -timeout 25m ./...

# Every image of k8s/images/images.env as a docker-archive tarball in bin/images/, built
# without a container daemon: person, score, localmongo (Go, scratch, non-root 65532), the
# `helm test` probe (http-check), the RabbitMQ Cluster Operator (its Go module) and the RabbitMQ server (Debian's package in a
# debootstrap root; needs root and debootstrap). Cached; `make images IMAGES="person score"`
# builds a subset.
IMAGES ?= person score localmongo http-check operator rabbitmq
images:
	k8s/images/build.sh $(IMAGES)

# Chart dependencies, offline: the operator chart's CRD and RBAC copied from its Go
# module, then `helm dependency update` of charts/person and charts/score (file:// only).
chart-deps:
	cd k8s/test && $(GO) run ./cmd/chart-deps -charts $(CURDIR)/charts

# kind cluster + Traefik + metrics-server + images + both charts; waits until ready.
up: k8s-tools chart-deps
	$(MAKE) images IMAGES="person score http-check"
	@command -v docker >/dev/null || { echo "make up needs Docker: kind runs the cluster nodes as containers" >&2; exit 1; }
	@$(BIN)/kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
	  $(BIN)/kind create cluster --name $(KIND_CLUSTER) --config k8s/kind-config.yaml --wait 180s
	for i in person score http-check; do $(BIN)/kind load image-archive $(BIN)/images/$$i.tar --name $(KIND_CLUSTER); done
	$(BIN)/helm upgrade --install traefik traefik --repo $(TRAEFIK_CHART_REPO) --version $(TRAEFIK_CHART_VERSION) \
	  --kube-context $(KUBE_CONTEXT) -n traefik --create-namespace -f k8s/addons/traefik.values.yaml --wait --timeout 5m
	$(BIN)/helm upgrade --install metrics-server metrics-server --repo $(METRICS_SERVER_CHART_REPO) --version $(METRICS_SERVER_CHART_VERSION) \
	  --kube-context $(KUBE_CONTEXT) -n kube-system -f k8s/addons/metrics-server.values.yaml --wait --timeout 5m
	$(MAKE) deploy

# Both charts (kind values) into the current kind cluster; person installs the operator
# and the RabbitmqCluster, score uses them. `helm test` proves both answer.
deploy: $(BIN)/helm chart-deps
	$(KUBECTL) apply -f - < k8s/addons/namespace.yaml
	$(BIN)/helm upgrade --install person charts/person --kube-context $(KUBE_CONTEXT) -n $(K8S_NAMESPACE) \
	  -f charts/person/values-kind.yaml --wait --timeout 10m
	$(BIN)/helm upgrade --install score charts/score --kube-context $(KUBE_CONTEXT) -n $(K8S_NAMESPACE) \
	  -f charts/score/values-kind.yaml --wait --timeout 10m
	$(BIN)/helm test person --kube-context $(KUBE_CONTEXT) -n $(K8S_NAMESPACE) --logs
	$(BIN)/helm test score --kube-context $(KUBE_CONTEXT) -n $(K8S_NAMESPACE) --logs

down: $(BIN)/kind
	$(BIN)/kind delete cluster --name $(KIND_CLUSTER)

# skaffold dev loop (skaffold.yaml) with the tools of bin/ only (skaffold calls helm and,
# for kind, kind from PATH). SKAFFOLD_PROFILE=kind (default; context kind-personscore,
# needs Docker) or local-node (the node of `make cluster-up`: its KUBECONFIG, a loopback
# registry for skaffold's digests, images imported into the node's containerd with ctr).
# SKAFFOLD_CMD=run deploys once instead of watching.
SKAFFOLD_CMD            ?= dev
LOCAL_REGISTRY          ?= 127.0.0.1:5000
NODE_CONTAINERD_ADDRESS ?= /run/personscore-node/containerd/containerd.sock
NODE_CTR                ?= $(BIN)/ctr
SKAFFOLD_FLAGS           = --config $(BIN)/skaffold-config.yaml --update-check=false
dev: $(BIN)/helm $(BIN)/skaffold chart-deps
	cp k8s/skaffold-config.yaml $(BIN)/skaffold-config.yaml
ifeq ($(SKAFFOLD_PROFILE),local-node)
	@test -S "$(NODE_CONTAINERD_ADDRESS)" || { echo "no containerd socket at $(NODE_CONTAINERD_ADDRESS): start the local node (make cluster-up) or set NODE_CONTAINERD_ADDRESS" >&2; exit 1; }
	@test -x "$(NODE_CTR)" || { echo "no ctr at $(NODE_CTR): make cluster-up builds it, or set NODE_CTR" >&2; exit 1; }
	cd k8s/test && $(GO) build -o $(BIN)/local-registry ./cmd/local-registry && $(GO) build -o $(BIN)/build-image ./cmd/build-image
	$(BIN)/local-registry -addr $(LOCAL_REGISTRY) -dir $(BIN)/.registry & reg=$$!; trap 'kill $$reg' EXIT; \
	  CONTAINERD_ADDRESS=$(NODE_CONTAINERD_ADDRESS) CTR=$(NODE_CTR) PATH="$(BIN):$$PATH" \
	  $(BIN)/skaffold $(SKAFFOLD_CMD) $(SKAFFOLD_FLAGS) -p local-node --default-repo $(LOCAL_REGISTRY) $(SKAFFOLD_ARGS)
else
	$(MAKE) --no-print-directory $(BIN)/kind
	PATH="$(BIN):$$PATH" $(BIN)/skaffold $(SKAFFOLD_CMD) $(SKAFFOLD_FLAGS) -p $(SKAFFOLD_PROFILE) --kube-context $(KUBE_CONTEXT) $(SKAFFOLD_ARGS)
endif

# The original README's curls through the ingress (port 80 by path, port 81 = score).
smoke:
	@set -e; \
	req() { code=$$(curl -sS -o /tmp/personscore-smoke.out -w '%{http_code}' "$$@"); \
	  echo "$$code $$*"; cat /tmp/personscore-smoke.out; echo; }; \
	req -H 'Content-Type: application/json' http://localhost/person --data @payloads/new_person.json; \
	case $$code in 2??|409) ;; *) exit 1;; esac; \
	for kind in income asset debt; do \
	  req -H 'Content-Type: application/json' http://localhost/person/11111/$$kind --data @payloads/new_$$kind.json; \
	  case $$code in 2??) ;; *) exit 1;; esac; \
	done; \
	for i in $$(seq 1 30); do \
	  req http://localhost:81/11111/score; \
	  case $$code in 200) exit 0;; esac; sleep 1; \
	done; \
	echo "score for 11111 not available through port 81 after 30s" >&2; exit 1
# --- end kubernetes ---

# --- local node: a real single-node cluster on this machine (k8s/local, docs/KUBERNETES.md) ---
# Everything it runs is built here from Go modules (k8s/hack/build-control-plane.sh node)
# and Debian packages; it needs root. State in NODE_STATE, removed by cluster-down.
NODE_STATE ?= /var/lib/personscore-node
NODE       := $(BIN)/node -root $(CURDIR) -state $(NODE_STATE)

.PHONY: node-tools cluster-up cluster-down test-cluster

node-tools:
	nice -n 10 k8s/hack/build-control-plane.sh node
	cd k8s/local && CGO_ENABLED=0 $(GO) build -o $(BIN)/node ./cmd/node
	cd k8s/local && CGO_ENABLED=0 $(GO) build -ldflags=-s -o $(BIN)/pause ./cmd/pause

# Starts (or completes) the node, its add-ons and both charts; harmless when it runs.
cluster-up: node-tools $(BIN)/helm images chart-deps
	$(NODE) up

# Stops every process by PID, undoes every host change and checks the host against the
# record taken before the first change; harmless when nothing runs.
cluster-down:
	cd k8s/local && CGO_ENABLED=0 $(GO) build -o $(BIN)/node ./cmd/node
	$(NODE) down

# End-to-end tests against the node (brings it up first when needed); one of them runs
# `make dev SKAFFOLD_PROFILE=local-node` (skaffold run, then a skaffold dev iteration).
test-cluster: cluster-up $(BIN)/skaffold
	cd k8s/local && KUBECONFIG=$(NODE_STATE)/kubeconfig/admin.kubeconfig HELM=$(BIN)/helm REPO_ROOT=$(CURDIR) \
	  $(GO) test -count=1 -timeout 60m -v ./...
# --- end local node ---
