# cagewatch. Every target runs as root on a Linux host with BTF and cgroup v2.
GO            ?= go
BIN           := bin/cagewatch
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X main.version=$(VERSION)
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
# Fuzz budgets are counts (about 10 s each here), not durations: a duration
# races Go's fuzz coordinator at its deadline and fails with "context deadline
# exceeded" and no crasher (golang/go#75804, fixed in Go 1.27).
# FUZZTIME=1m make fuzz sets one budget for all of them.
FUZZTIME      ?=
STORE         ?= ./var/cagewatch.db

.PHONY: all generate build image test unit e2e-k8s e2e churn servers fuzz bench bench-smoke bench-tool lint run demo model-bench fleet-bench clean

all: build

# Rebuilds the bpf2go output (needs clang, llvm-strip) and the syscall table.
generate:
	$(GO) generate ./...
	./hack/gen-syscalls.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cagewatch

# The agent's container image: the static binary alone on an empty base
# (nothing can be pulled), imported into Docker as $(IMAGE) and saved to
# bin/cagewatch-image.tar for `ctr images import`.
IMAGE ?= cagewatch/agent:latest
image:
	mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/image/cagewatch ./cmd/cagewatch
	tar -C bin/image -cf bin/image.tar cagewatch
	docker import -c 'ENTRYPOINT ["/cagewatch"]' -c 'CMD ["run"]' bin/image.tar $(IMAGE)
	docker save $(IMAGE) -o bin/cagewatch-image.tar
	rm -f bin/image.tar

# Unit and kernel (BPF) tests, then the real-runtime suites one after another
# (never in parallel with other BPF tests), then a short run of each fuzz target.
# CI sets CAGEWATCH_REQUIRE_BPF=1 so a program that cannot load fails instead of skipping.
test: unit
	$(MAKE) e2e-k8s
	$(MAKE) e2e
	$(MAKE) churn
	$(MAKE) servers
	$(MAKE) fuzz
	$(MAKE) bench-smoke

# Everything but the long real-runtime suites below. One package at a time
# (-p 1): BPF tests of two packages at once load each other's CPUs, and the
# paced statistical tests then see stalls as anomalies.
LONG_SUITES := ^(TestE2E|TestChurn|TestBPFDockerChurnNoGrowth|TestServers|TestK8s)$$
unit:
	$(GO) test -p 1 -count=1 -timeout 30m -skip '$(LONG_SUITES)' ./...

# Pods through a real containerd's CRI API, as kubelet runs them (about half a
# minute): .ci/containerd.sh starts a containerd of its own (Docker must be up,
# .ci/dockerd.sh start, to build the images it imports) and stops it after.
e2e-k8s: image
	.ci/containerd.sh start
	$(GO) test -count=1 -v -run '^TestK8s$$' -timeout 10m ./cmd/cagewatch/; rc=$$?; .ci/containerd.sh stop; exit $$rc

# End to end with real Docker containers (.ci/dockerd.sh start): learn benign
# workloads, a fresh benign pass, the escape scenarios of testdata/scenarios, and
# the release_agent escape in enforce mode; prints the detection table. Then 120
# short containers under enforce mode: the kernel maps come back to where they were.
e2e:
	$(GO) test -count=1 -v -run '^(TestE2E|TestBPFDockerChurnNoGrowth)$$' -timeout 20m ./cmd/cagewatch/

# Container churn in real Docker (.ci/dockerd.sh start), agent in auto mode: a
# container exec's more processes than pid_max, 300 containers start on reused
# PIDs while their images learn, then a benign pass; no alert may fire and the
# agent's memory and map entries stay flat (prints the figures).
churn:
	$(GO) test -count=1 -v -run '^TestChurn$$' -timeout 15m ./cmd/cagewatch/

# Real servers as benign workloads (#14): nginx, redis, postgres and mariadb
# images built from this host's Debian packages (testdata/servers/build.sh,
# cached by a label), learned in auto mode under load varying 5x within and
# between containers (ab, redis-benchmark, pgbench, mariadb from the host), then a fresh pass of at least ten container-minutes
# that must raise no alert; prints threshold and highest benign score per
# image. About 6 minutes with the images cached.
servers:
	$(GO) test -count=1 -v -run '^TestServers$$' -timeout 20m ./cmd/cagewatch/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZTIME),30000x) -fuzzminimizetime 1s ./profiler/sensor/
	$(GO) test -run '^$$' -fuzz '^FuzzClassifyPath$$' -fuzztime $(or $(FUZZTIME),30000x) -fuzzminimizetime 1s ./profiler/container/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecordedWindow$$' -fuzztime $(or $(FUZZTIME),150000x) -fuzzminimizetime 1s ./model/
	$(GO) test -run '^$$' -fuzz '^FuzzParseVulnReport$$' -fuzztime $(or $(FUZZTIME),60000x) -fuzzminimizetime 1s ./model/

# The statistical scorer (the agent's own model and calibration) on ADFA-LD:
# learn on train.jsonl, score dev.jsonl, print AUC and detection at 1%/5% FPR.
ADFA ?= ../shared/data/adfa-ld
model-bench: build
	./$(BIN) replay --train $(ADFA)/train.jsonl --score $(ADFA)/dev.jsonl --summary | tail -n 6

# The performance table (README, Performance): per-syscall cost from the kernel's
# BPF statistics against an empty program and bpftrace, a file workload with and
# without the agent, sampling, agent CPU and RSS at 1,000 containers, scoring and
# event throughput; a JSON copy goes to bench/out/. Then the Go benchmarks of the
# pure parts, benchstat-friendly. Root, about 5 minutes.
BENCH_FLAGS ?=
bench: build bench-tool
	./bin/cagewatch-bench -agent $(BIN) $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./model/ ./profiler/...

# The same harness with tiny sizes, so CI knows `make bench` still runs.
bench-smoke: build bench-tool
	./bin/cagewatch-bench -agent $(BIN) -smoke -out $(CURDIR)/bench/out/smoke

bench-tool:
	$(GO) build -o bin/cagewatch-bench ./cmd/cagewatch-bench

# Fleet baselines (#17) at scale on paper made real: 50 publishers (goroutines,
# each its own node and etcd client) learn 10 images against a real 3-member
# etcd on loopback for a minute, then print publish latency, compare-and-swap
# retries, etcd's database size and watch traffic (docs/fleet.md). Not part of
# make test. FLEET_SIM sets CAGEWATCH_FLEET_SIM_* (NODES, IMAGES, DURATION,
# INTERVAL, SPACING), e.g. FLEET_SIM="CAGEWATCH_FLEET_SIM_NODES=100".
FLEET_SIM ?=
fleet-bench:
	env CAGEWATCH_FLEET_SIM=1 $(FLEET_SIM) $(GO) test -count=1 -v -run '^TestFleetSimulation$$' -timeout 20m ./profiler/fleet/

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	test -x bin/golangci-lint || GOBIN=$(CURDIR)/bin $(GO) install $(GOLANGCI_LINT)
	bin/golangci-lint run ./...

# Runs the agent on this machine with the embedded defaults and a store under the repo.
run: build
	mkdir -p $(dir $(STORE))
	./$(BIN) run --store $(STORE)

# A two-minute tour: learns a workload in its own cgroup, catches an escape attempt
# and a behaviour change, cleans up. Needs root, no Docker.
demo: build
	./$(BIN) demo --log-level warn

clean:
	rm -rf bin var
