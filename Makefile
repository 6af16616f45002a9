# Loom: the two commands of the README's quick start.
#   make        installs what is missing, builds (release) and runs the main job
#   make test   runs the whole test suite
SWIFT ?= swift
RELEASE_FLAGS ?= -c release

.PHONY: all run setup build test bench clean

all: run

setup:
	@bash scripts/setup.sh

build: setup
	$(SWIFT) build $(RELEASE_FLAGS) --product loom

# The main job. Until `loom train` lands (issue 3) it is the autograd demo.
run: build
	$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/loom demo

test: setup
	$(SWIFT) test

bench: build
	$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/loom bench

clean:
	rm -rf .build
