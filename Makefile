# The two commands of the README: `make demo` (set up, render and validate the example repository) and
# `make test` (set up and run the test suite). Everything is installed inside the project: .venv/, .tools/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup tools tools-server tools-hub tools-net tools-e2e e2e demo test docs clean

# kflowgen's bytecode, written once here: where Python writes none (PYTHONDONTWRITEBYTECODE, as in many CI images)
# every run would compile kflowgen again (0.15 s of each gate); a file changed since is compiled when imported.
setup: $(BIN)/kflowgen tools
	$(BIN)/python -m compileall -q kflowgen

$(BIN)/kflowgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

ACTIONLINT := github.com/rhysd/actionlint/cmd/actionlint@v1.7.12

tools: $(BIN)/kflowgen .tools/bin/actionlint
	$(BIN)/kflowgen tools install

# actionlint checks the GitHub workflows in the tests (a developer tool: users do not need it)
.tools/bin/actionlint:
	GOBIN=$(CURDIR)/.tools/bin go install $(ACTIONLINT)

# etcd, kube-apiserver and kube-controller-manager from source (tools/apiserver), for `validate --server` and
# the API-server tests: 10-20 minutes and 2.2 GB of memory the first time, seconds afterwards.
tools-server: $(BIN)/kflowgen
	$(BIN)/kflowgen tools install --server

# The real Zero to JupyterHub chart rendered by helm, and the real JupyterHub and KubeSpawner loading the result, for
# the hub tests (tests/test_jupyterhub.py): helm from its Go module, and a virtual environment with the exact Python
# packages of the chart's hub image (listed beside the chart in ../shared; without it those tests skip).
HELM := helm.sh/helm/v3/cmd/helm@v3.21.4
HUB_REQUIREMENTS ?= ../shared/upstream/jupyterhub-chart/hub-image-requirements.txt
tools-hub: .tools/bin/helm .tools/hub/bin/jupyterhub

.tools/bin/helm:
	GOBIN=$(CURDIR)/.tools/bin go install $(HELM)

.tools/hub/bin/jupyterhub: $(HUB_REQUIREMENTS)
	$(PYTHON) -m venv .tools/hub
	.tools/hub/bin/pip install --quiet -r $(HUB_REQUIREMENTS)
	touch $@

# cyclonus (Kubernetes SIG Network's policy engine, the one its conformance tests use) answers, for the built
# NetworkPolicies, which pod may reach which (tests/test_network.py): a judge of the policies kflowgen did not write.
CYCLONUS := github.com/mattfenwick/cyclonus/cmd/cyclonus@v0.5.6
tools-net: .tools/bin/cyclonus

.tools/bin/cyclonus:
	GOBIN=$(CURDIR)/.tools/bin go install $(CYCLONUS)

# The end-to-end stack (tests/test_e2e.py): real Argo CD v3.6.2 (repo-server and application-controller, run out of
# cluster), kube-scheduler and kwok's fake nodes beside the control plane of `tools-server`, and Redis for Argo CD's
# cache. Argo CD's go.mod needs Go 1.27, which the go command fetches from the module proxy (GOTOOLCHAIN). The first
# Argo CD build takes 10+ minutes and about 3 GB of memory (E2E_GOFLAGS=-p=1 when memory is short); each binary is
# a file target, built once. To change a pinned version, change it here (and tools/argocd/go.mod), then delete the
# binary from .tools/bin.
GO127        := GOTOOLCHAIN=go1.27.3
ARGOCD_VERSION := v3.6.2
ARGOCD_PKG   := github.com/argoproj/argo-cd/v3/common
ARGOCD_LDFLAGS := -X $(ARGOCD_PKG).version=$(ARGOCD_VERSION:v%=%) -X $(ARGOCD_PKG).gitTreeState=clean \
                  -X $(ARGOCD_PKG).kubectlVersion=v0.37.0 -X $(ARGOCD_PKG).buildDate=2026-11-18T18:55:45Z
K8S_VERSION  := $(shell sed -n 's|^\tk8s.io/kubernetes \(v[0-9.]*\)$$|\1|p' tools/apiserver/go.mod)
K8S_LDFLAGS  := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,-X $(p).gitVersion=$(K8S_VERSION) \
                  -X $(p).gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION:v%=%))) \
                  -X $(p).gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION:v%=%))) -X $(p).gitTreeState=clean)
KWOK_VERSION := v0.8.0
# (versions are defined before tools-e2e: make expands a rule's prerequisites where it reads the rule)
KUEUE_VERSION   := v0.19.2
TRAINER_VERSION := v2.3.0
JOBSET_VERSION  := v0.12.0
KWOK         := sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
E2E_GOFLAGS  ?=
GOBUILD_ENV   = GOBIN=$(CURDIR)/.tools/bin GOWORK=off CGO_ENABLED=0 GOFLAGS='-mod=mod -buildvcs=false $(E2E_GOFLAGS)'

tools-e2e: tools-server .tools/bin/argocd .tools/bin/kube-scheduler .tools/bin/kwok .tools/share/kwok/stages.yaml \
           .tools/bin/kueue .tools/share/kueue/$(KUEUE_VERSION) .tools/bin/trainer-controller-manager \
           .tools/share/trainer/$(TRAINER_VERSION) .tools/bin/jobset .tools/share/jobset/$(JOBSET_VERSION)
	@command -v redis-server >/dev/null || { echo "tools-e2e: redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

# the end-to-end tests alone (`make test` runs them too, when the binaries are there), with their report per
# environment; `KFLOWGEN_E2E_REPO=/path/to/your/repo make e2e` bootstraps your own repository instead of the example
e2e: tools-e2e .tools/bin/helm
	$(BIN)/python -m pytest -m e2e -s -p no:cacheprovider tests/test_e2e.py

# the `argocd` multi-call binary (run as argocd-repo-server / argocd-application-controller by ARGOCD_BINARY_NAME)
.tools/bin/argocd:
	cd tools/argocd && $(GO127) $(GOBUILD_ENV) go build -o $(CURDIR)/$@.tmp -ldflags='$(ARGOCD_LDFLAGS)' \
	  github.com/argoproj/argo-cd/v3/cmd
	mv $@.tmp $@

# kube-scheduler from the module of tools-server's kube-apiserver (same k8s.io/kubernetes version and replaces)
.tools/bin/kube-scheduler:
	cd tools/apiserver && $(GOBUILD_ENV) go install -ldflags='$(K8S_LDFLAGS)' k8s.io/kubernetes/cmd/kube-scheduler

.tools/bin/kwok:
	GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 go install $(KWOK)

# kwok's own Stage files (from its module, as `go install` downloaded it): fake nodes become Ready and keep their
# lease, pods on them become Running and Ready, and a Job's pods complete
KWOK_STAGES := node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
               pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml
.tools/share/kwok/stages.yaml:
	dir="$$(go mod download -json sigs.k8s.io/kwok@$(KWOK_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && test -d "$$dir" && \
	  mkdir -p $(@D) && for f in $(KWOK_STAGES); do echo '---'; cat "$$dir/kustomize/stage/$$f"; done > $@.tmp
	mv $@.tmp $@

# Kueue's controller (queueing in the environments where the platform turns it on): `go install` of its pinned module
# (no replace lines), with its version stamped as its own release build does; its CRDs and its webhook configuration
# (the kustomizations config/components/crd and config/components/webhook) copied from the module the go command
# downloaded, built and read by the e2e stack at setup (never committed). The first build: 14 minutes and 2.3 GB of
# memory on two cores shared with other builds (`/usr/bin/time -v`)
KUEUE         := sigs.k8s.io/kueue/cmd/kueue@$(KUEUE_VERSION)
.tools/bin/kueue:
	GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 GOFLAGS='-buildvcs=false $(E2E_GOFLAGS)' go install \
	  -ldflags='-X sigs.k8s.io/kueue/pkg/version.GitVersion=$(KUEUE_VERSION)' $(KUEUE)

.tools/share/kueue/$(KUEUE_VERSION):
	dir="$$(go mod download -json sigs.k8s.io/kueue@$(KUEUE_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && test -d "$$dir" && \
	  rm -rf $@.tmp && mkdir -p $@.tmp && cp -R "$$dir"/config/components/crd "$$dir"/config/components/webhook $@.tmp/ && \
	  chmod -R u+w $@.tmp
	mv $@.tmp $@

# Kubeflow Trainer's controller (TrainJobs into JobSets) and JobSet's (JobSets into Jobs), which the platform installs
# with Trainer's runtimes: `go install` of the pinned modules (no replace lines; JobSet's main package is its module's
# root, at the version Trainer's go.mod requires). Copied from the modules at setup (never committed): JobSet's CRDs
# and webhook configuration, Trainer's webhook configuration and its `torch-distributed` ClusterTrainingRuntime.
# The first Trainer build took about 7 minutes on this machine (with its modules downloaded; later builds hit the cache).
TRAINER         := github.com/kubeflow/trainer/v2
.tools/bin/trainer-controller-manager:
	GOBIN=$(CURDIR)/.tools/bin CGO_ENABLED=0 GOFLAGS='-buildvcs=false $(E2E_GOFLAGS)' nice -n 10 go install \
	  $(TRAINER)/cmd/trainer-controller-manager@$(TRAINER_VERSION)

# (`go build` in JobSet's downloaded module: `go install sigs.k8s.io/jobset@...` asks the proxy for the module's
# version list, which it refuses)
.tools/bin/jobset:
	dir="$$(go mod download -json sigs.k8s.io/jobset@$(JOBSET_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && test -d "$$dir" && \
	  cd "$$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS='-buildvcs=false $(E2E_GOFLAGS)' nice -n 10 go build -o $(CURDIR)/$@.tmp .
	mv $@.tmp $@

.tools/share/trainer/$(TRAINER_VERSION):
	dir="$$(go mod download -json $(TRAINER)@$(TRAINER_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && test -d "$$dir" && \
	  rm -rf $@.tmp && mkdir -p $@.tmp && cp -R "$$dir"/manifests/base/webhook "$$dir"/manifests/base/runtimes $@.tmp/ && \
	  chmod -R u+w $@.tmp
	mv $@.tmp $@

.tools/share/jobset/$(JOBSET_VERSION):
	dir="$$(go mod download -json sigs.k8s.io/jobset@$(JOBSET_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')" && test -d "$$dir" && \
	  rm -rf $@.tmp && mkdir -p $@.tmp && cp -R "$$dir"/config/components/crd "$$dir"/config/components/webhook $@.tmp/ && \
	  chmod -R u+w $@.tmp
	mv $@.tmp $@

demo: setup
	$(BIN)/kflowgen render
	$(BIN)/kflowgen validate

test: setup
	$(BIN)/python -m pytest

# the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or a page not in the navigation fails
docs: $(BIN)/mkdocs
	$(BIN)/mkdocs build --strict --quiet

$(BIN)/mkdocs: $(BIN)/kflowgen
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@

clean:
	rm -rf $(VENV) .tools .kflowgen-swap-* site
