# orderlake: `make help` lists the targets. Everything installs into this checkout:
# .venv/ (Python), jvm/*/target/ (Maven-resolved jars), .orderlake/ (runtime state).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
OL      := $(VENV)/bin/orderlake
MVN     := mvn -q -B
PYTEST_ARGS ?=

# stamps make `make setup` idempotent and quick when nothing changed
PY_STAMP    := $(VENV)/.installed
JVM_STAMPS  := jvm/kafka/target/.resolved jvm/flume/target/.resolved jvm/spark/target/.resolved
# each JVM program's class-data archive (orderlake.stack.jvm_archives): made again when its jars
# (or, for Spark, pyspark's) change
CLASS_ARCHIVES := jvm/kafka/target/classes.jsa jvm/flume/target/classes.jsa jvm/spark/target/classes.jsa
# docker-compose.yaml read by compose's own loader (orderlake.cluster.compose); rebuilt when its
# sources change, so the binary is its own stamp
COMPOSE_CONFIG := tools/compose-config/compose-config
# the secrets scanner, built from its module at a pinned version into tools/bin
GITLEAKS := tools/bin/gitleaks
GITLEAKS_MODULE := github.com/zricethezav/gitleaks/v8@v8.30.1

.PHONY: help setup system-packages run up down status test test-unit test-integration \
        test-cluster bench bench-cluster cluster cluster-down bench-ingest bench-speed bench-jit \
        bench-speed-idle bench-rotation-ab bench-batch bench-airflow bench-warm-spark \
        bench-startup bench-scale soak perf-doc lint secrets-scan fmt typecheck clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

setup: system-packages $(PY_STAMP) $(JVM_STAMPS) $(CLASS_ARCHIVES) $(COMPOSE_CONFIG) ## install everything (idempotent): Debian packages, .venv, JVM jars and class archives, compose loader

system-packages: ## install Java 17, Maven, Chromium (dashboard tests), iproute2 and PostgreSQL (cluster mode) from Debian when missing
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn  >/dev/null || missing="$$missing maven"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

.SECONDEXPANSION:

$(PY_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3.11 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@touch $@

jvm/%/target/.resolved: jvm/%/pom.xml $$(shell find jvm/$$*/src -type f 2>/dev/null)
	@echo "resolving jvm/$* with Maven"
	@rm -rf jvm/$*/target/lib
	cd jvm/$* && $(MVN) package dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=target/lib
	@touch $@

jvm/%/target/classes.jsa: jvm/%/target/.resolved $(PY_STAMP)
	@echo "dumping the $* class archive (one start of it)"
	@$(PY) -m orderlake.stack.jvm_archives $*

$(COMPOSE_CONFIG): tools/compose-config/main.go tools/compose-config/go.mod tools/compose-config/go.sum
	@command -v go >/dev/null || { echo "Go 1.24 or newer is needed to build $@ (https://go.dev/dl/)"; exit 1; }
	cd tools/compose-config && go build -o compose-config .

run: setup ## the main job: start the platform, stream a Tianchi-shaped workload, show the results
	@$(PY) -m orderlake.main_job

up: setup ## start the embedded platform (Kafka, Flume agents, ...) under supervision
	@$(OL) up

down: ## stop the embedded platform
	@$(OL) down

status: ## show each component's state and key numbers
	@$(OL) status

cluster: setup ## run docker-compose.yaml as hosts in network namespaces on this machine (root)
	@$(OL) cluster up

cluster-down: ## stop the namespace cluster and remove its network (keeps its volumes)
	@$(OL) cluster down

test: setup ## run the whole test suite (unit, DAG, integration, end-to-end)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## run only the fast unit tests
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## run the integration and end-to-end tests (real broker, agents, Spark, Airflow)
	$(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

bench: bench-ingest bench-speed bench-batch bench-airflow ## run every benchmark (writes bench/results/*.json)

test-cluster: setup ## only the cluster tier: docker-compose.yaml as hosts in network namespaces, node and link faults (root)
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

bench-cluster: setup ## the namespace cluster: start time, ingest, freshness at 5,000 lines/s next to the embedded platform, recovery after each fault (root)
	$(PY) -m bench.cluster

bench-ingest: setup ## append -> Kafka throughput and latency through 2 edge agents and the collector
	$(PY) -m bench.ingest

bench-speed: setup ## append -> counted in the speed table: freshness, micro-batch costs, max rate, plain-consumer peer
	$(PY) -m bench.speed

bench-speed-idle: setup ## the speed layer's idle poll: an idle platform's CPU and a lone purchase's lateness at 10 and 250 ms, interleaved
	$(PY) -m bench.speed_idle

bench-rotation-ab: setup ## lines sent to Kafka again when log files rotate by rename: BASE=<rev> against this checkout, interleaved
	$(PY) -m bench.rotation_ab --base $(or $(BASE),HEAD)

bench-batch: setup ## bronze load rate, silver+gold rebuild at 1 M and 10 M events, one-day update, DuckDB peer
	$(PY) -m bench.batch

bench-airflow: setup ## bronze asset update -> gold updated, and scheduling gaps, on the embedded Airflow
	$(PY) -m bench.airflow

bench-jit: setup ## the warm Spark's CPU and times on test-sized batch work at ORDERLAKE_SPARK_JIT_SCALING 1 and 4, interleaved
	$(PY) -m bench.jit

bench-startup: setup ## `orderlake up` of every component vs a base revision (BASE=rev), interleaved
	$(PY) -m bench.startup --base $${BASE:-ac56884}

bench-scale: setup ## the whole pipeline at growing volume: time per hop, peak RSS, disk (EVENTS="1000000 5000000", KEEP=1 keeps other volumes)
	$(PY) -m bench.scale --events $${EVENTS:-1000000 5000000} $(if $(KEEP),--keep-others)

bench-warm-spark: setup ## batch steps and queries on the warm Spark vs a JVM each (BASE=rev before it)
	$(PY) -m bench.warm_spark --base $${BASE:-2a31418}

perf-doc: setup ## docs/PERFORMANCE.md from bench/results/*.json (one current table per benchmark)
	$(PY) -m bench.perf_doc

soak: setup ## every fault of the battery at its soak count (about 25 min); bench/results/soak.md
	$(PY) -m bench.soak

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check include tests dags streaming batch expectations bench
	$(VENV)/bin/ruff format --check include tests dags streaming batch expectations bench

secrets-scan: $(GITLEAKS) ## gitleaks over every commit of the repository and the working tree
	$(GITLEAKS) git --no-banner --redact .
	$(GITLEAKS) dir --no-banner --redact .

$(GITLEAKS):
	@command -v go >/dev/null || { echo "Go 1.24 or newer is needed to build $@ (https://go.dev/dl/)"; exit 1; }
	GOBIN=$(abspath tools/bin) go install $(GITLEAKS_MODULE)

fmt: setup ## format the code
	$(VENV)/bin/ruff format include tests dags streaming batch expectations bench
	$(VENV)/bin/ruff check --fix include tests dags streaming batch expectations bench

typecheck: setup ## mypy on the shared library
	$(VENV)/bin/mypy

clean: ## remove build outputs (keeps .venv and runtime state)
	rm -rf jvm/*/target $(COMPOSE_CONFIG) .pytest_cache .ruff_cache .mypy_cache
