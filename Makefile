# Perennial — developer entry points. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= full
# `make demo`'s scenario: loop (train, serve, drift, retrain) or canary (a canary rollout).
SCENARIO ?= loop
PYTEST_ARGS ?=
# Parallel test processes: the e2e tests mostly wait on timers, not on the two cores.
TEST_WORKERS ?= 4

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,examples]'
	touch $@

# The operator alone, with only its runtime dependencies (what the image ships): the
# benchmark measures this one, not one sharing a process with the test tools' imports.
OPERATOR_VENV := .venv-operator
$(OPERATOR_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OPERATOR_VENV)
	$(OPERATOR_VENV)/bin/pip install --quiet --upgrade pip
	$(OPERATOR_VENV)/bin/pip install --quiet -e .
	touch $@

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.installed ## create .venv with the operator, its test/dev tools and the examples' dependencies

# `make demo PROFILE=real`: the loop with pods that really run (a real node: a bridge and
# cgroups on this machine, a longer first build). The default stays `full` (kwok).
.PHONY: demo
demo: install ## bring up the local cluster (building it once) and show it working (SCENARIO=loop|canary, PROFILE=full|real)
	$(BIN)/python -m localcluster demo --scenario $(SCENARIO) --profile $(PROFILE)

.PHONY: test
test: lint ## lint, then every test tier against one shared local cluster
	@# Build (or find cached) binaries first: a cold build takes minutes, and belongs to
	@# no single test's timeout.
	$(BIN)/python -m localcluster build --profile full >/dev/null
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

.PHONY: test-unit test-integration test-e2e test-real
test-unit: install ## pure logic only, no cluster
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)
test-integration: install ## against the `api` profile (etcd + kube-apiserver)
	$(BIN)/python -m localcluster build --profile api >/dev/null
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)
test-e2e: install ## against the `full` profile
	$(BIN)/python -m localcluster build --profile full >/dev/null
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)
# Not part of `make test` (CI runs it after, .ci/run): the `real` node changes this machine (a bridge, cgroups).
test-real: install ## pods that really run: against a cluster from `make cluster-up PROFILE=real` (skips without one)
	$(BIN)/pytest tests/real $(PYTEST_ARGS)

.PHONY: crds
crds: install ## regenerate crds/ and the API reference docs/api.md from the pydantic models in operator/perennial/api
	$(BIN)/python -m perennial.api.crdgen crds
	$(BIN)/python -m perennial.api.docgen docs/api.md

.PHONY: monitoring
monitoring: install ## regenerate monitoring/prometheusrule.yaml from monitoring/alerts.yaml
	$(BIN)/python -m monitoring.generate

.PHONY: lint
lint: install ## ruff, mypy and the import-layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: cluster-up cluster-down cluster-status cluster-build
cluster-up: install ## start the local cluster (PROFILE=api|full|real); prints the path of cluster.env
	$(BIN)/python -m localcluster up --profile $(PROFILE)
cluster-down: install ## stop the local cluster and delete its state
	$(BIN)/python -m localcluster down
cluster-status: install ## show the local cluster's processes
	$(BIN)/python -m localcluster status
cluster-build: install ## only build and cache the control-plane binaries
	$(BIN)/python -m localcluster build --profile $(PROFILE)

.PHONY: run
run: install ## run the operator locally against the local cluster, as its ServiceAccount from manifests/
	env_file=$$($(BIN)/python -m localcluster up --profile $(PROFILE) | tail -n1); \
	set -a; . "$$env_file"; set +a; \
	$$KUBECTL apply --server-side --force-conflicts -f crds/ >/dev/null; \
	KUBECONFIG=$$($(BIN)/python -m localcluster operator-kubeconfig) \
	PERENNIAL_METRICS_ADDRESS=$${PERENNIAL_METRICS_ADDRESS:-127.0.0.1} \
	PERENNIAL_PROMETHEUS_URL=$${PERENNIAL_PROMETHEUS_URL:-$${PROMETHEUS_URL:-}} \
	exec $(BIN)/perennial run

# ---------------------------------------------------------------- delivery
# The chart is the source: manifests/ and the chart's CRD templates (templates/crds/, from
# crds/) are generated (a test fails when they are stale). helm comes from the local
# cluster's build cache.
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' operator/perennial/__init__.py)
IMAGE ?= perennial:$(VERSION)
KIND_CLUSTER ?= perennial

.PHONY: manifests policy image kind-load
manifests: install ## regenerate the chart's templates/crds/ from crds/, then manifests/ from the chart
	$(BIN)/python -m localcluster build --profile full >/dev/null
	$(BIN)/python -m tests.support.delivery generate
policy: install ## manifest policy check (Checkov) over manifests/, the rendered chart and the Dockerfile
	$(BIN)/python -m localcluster build --profile full >/dev/null
	$(BIN)/python -m tests.support.delivery policy
image: ## build the operator image (needs Docker): IMAGE=perennial:<version>
	docker build -t $(IMAGE) .
kind-load: image ## build the image and load it into the kind cluster (KIND_CLUSTER=perennial)
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

# ---------------------------------------------------------------- Argo CD
# Health checks and resource actions in Argo CD's resource_customizations layout; argocd-cm.yaml
# is generated from them (a test fails when it is stale). The harness runs them in gopher-lua, as Argo CD.
.PHONY: argocd-cm argocd-testdata argocd-test
argocd-cm: install ## regenerate argocd/argocd-cm.yaml from argocd/resource_customizations (health.lua, actions/)
	$(BIN)/python argocd/generate_cm.py
argocd-testdata: install ## recapture the health checks' testdata from live scenarios on the local cluster
	$(BIN)/python -m localcluster build --profile full >/dev/null
	$(BIN)/python -m tests.support.argocd_capture
argocd-test: ## run the health checks' and actions' tests in gopher-lua (Go harness in argocd/harness)
	cd argocd/harness && CGO_ENABLED=0 go test -count=1 ./...

# Scale benchmark (issue 10): N ModelDeployments + DriftPolicies through the operator vs a
# direct async client on the same API server. Appends its table to benchmarks/README.md.
# The default list takes about half an hour on 2 cores, N=3000 the most (benchmarks/README.md).
BENCH_N ?= 5 100 300 1000 3000
.PHONY: bench
bench: install $(OPERATOR_VENV)/.installed ## scale benchmark on the full local cluster (BENCH_N="5 100 300 1000 3000")
	$(BIN)/python -m benchmarks.scale --fresh-cluster --operator $(OPERATOR_VENV)/bin/perennial $(foreach n,$(BENCH_N),--n $(n))

# Failover benchmark (issue 16): two replicas, the leader SIGKILLed KILLS times; prints the
# time from each kill to the standby's first reconcile, against lease duration + 2 s.
KILLS ?= 5
.PHONY: bench-failover
bench-failover: install ## leader failover benchmark on the full local cluster (KILLS=5)
	$(BIN)/python -m localcluster up --profile full >/dev/null
	$(BIN)/python -m benchmarks.failover --kills $(KILLS)
