# The two commands of the README: `make demo` (set up, render and validate the example repository) and
# `make test` (set up and run the test suite). Everything is installed inside the project: .venv/, .tools/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup tools tools-server tools-hub tools-net demo test clean

setup: $(BIN)/kflowgen tools

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

demo: setup
	$(BIN)/kflowgen render
	$(BIN)/kflowgen validate

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .tools .kflowgen-swap-*
