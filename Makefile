# The two commands of the README: `make demo` (set up, render and validate the example repository) and
# `make test` (set up and run the test suite). Everything is installed inside the project: .venv/, .tools/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup tools tools-server demo test clean

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

demo: setup
	$(BIN)/kflowgen render
	$(BIN)/kflowgen validate

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .tools .kflowgen-swap-*
