# Wraps the common CMake targets. `make run` and `make check` are the two
# commands a new machine needs; both install missing Debian packages first.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
FUZZ_SECONDS ?= 20

.PHONY: all release debug asan fuzz-build fuzz fuzz-short run check test deps clean

all: release

deps:
	@bash scripts/deps.sh

release: deps
	@$(CMAKE) -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
	@$(CMAKE) --build build/release -j$(JOBS)

debug: deps
	@$(CMAKE) -S . -B build/debug -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@$(CMAKE) --build build/debug -j$(JOBS)

asan: deps
	@$(CMAKE) -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=ON >/dev/null
	@$(CMAKE) --build build/asan -j$(JOBS)

fuzz-build: deps
	@CC=clang $(CMAKE) -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DSL_FUZZ=ON >/dev/null
	@$(CMAKE) --build build/fuzz -j$(JOBS)

# Runs every libFuzzer driver for FUZZ_SECONDS each, starting from its corpus.
fuzz: fuzz-build
	@bash scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS)

fuzz-short: fuzz-build
	@bash scripts/fuzz.sh build/fuzz 10

test: release
	@cd build/release && ctest --output-on-failure -j$(JOBS)

run: release
	@bash scripts/run.sh

# The demo model (built once with the release binary, cached in data/), then
# the whole suite, then again under ASan+UBSan, then a short fuzz run.
check: release asan
	@bash scripts/demo_model.sh
	@cd build/release && ctest --output-on-failure -j$(JOBS)
	@cd build/asan && ctest --output-on-failure -j$(JOBS)
	@$(MAKE) --no-print-directory fuzz-short

clean:
	rm -rf build
