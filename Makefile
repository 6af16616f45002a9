# Loom: the two commands of the README's quick start.
#   make        installs what is missing, builds (release) and runs the main job
#   make test   runs the whole test suite
SWIFT ?= swift
# Release builds target the host's AVX2+FMA when it has them: without a target CPU Swift
# emits SSE2 code (see MACHINE-NOTES: SIMD kernels run 2-3x slower). Flags go on the command
# line, never into Package.swift (unsafeFlags would break packages depending on Loom).
CPU_FLAGS := $(shell grep -q ' avx2 ' /proc/cpuinfo 2>/dev/null && grep -q ' fma ' /proc/cpuinfo 2>/dev/null && echo "-Xswiftc -target-cpu -Xswiftc haswell")
# Tests run optimised too (the suite trains small models); -enable-testing lets the test
# build and the tool share one set of release artifacts instead of compiling twice.
RELEASE_FLAGS ?= -c release $(CPU_FLAGS) -Xswiftc -enable-testing

.PHONY: all run setup build test bench replay clean

all: run

setup:
	@bash scripts/setup.sh

build: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product loom

# The main job: train the default model (LeNet-5) on Fashion-MNIST; ARGS passes flags,
# e.g. make ARGS="--model convnet-bn --epochs 15".
ARGS ?=
run: build
	$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/loom train $(ARGS)

# The replay service (gRPC) is its own package, so gRPC stays out of the core build;
# `make replay` builds it and links loom-replay next to loom, where `loom replay` finds it.
REPLAY_DIR := Services/ReplayService
replay: build
	cd $(REPLAY_DIR) && $(SWIFT) build -c release $(CPU_FLAGS) --product loom-replay
	ln -sf "$$(cd $(REPLAY_DIR) && $(SWIFT) build -c release $(CPU_FLAGS) --show-bin-path)/loom-replay" \
		"$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/loom-replay"

# The suite, the checks that need real MPI ranks (collectives and DDP under mpirun), then
# the replay service's tests (servers on free loopback ports; the service suites again with
# clients on the framed transport) and `loom replay serve`.
test: setup
	$(SWIFT) test $(RELEASE_FLAGS)
	bash scripts/mpi_check.sh
	cd $(REPLAY_DIR) && $(SWIFT) build --build-tests && $(SWIFT) test --skip-build
	cd $(REPLAY_DIR) && LOOM_REPLAY_TEST_TRANSPORT=framed $(SWIFT) test --skip-build \
		--filter 'ReplayServiceTests\.(ReplayServiceTests|StreamingTests|SampleStreamTests|InsertStreamTests|MetricsTests)'
	bash scripts/replay_check.sh

bench: build
	$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/loom bench

clean:
	rm -rf .build
