# Turnpike's two set-up commands (`make run`, `make test`) and the developer targets.
# Every target installs what is missing first (scripts/install-deps), so a fresh Debian 12 works.
JOBS ?= $(shell nproc)
CONFIG ?= examples/configs/default.yaml
FUZZ_SECONDS ?= 20

.PHONY: all deps build build-asan build-fuzz run test unit integration fuzz-smoke fuzz bench lint lint-check clean

all: build

deps:
	@scripts/install-deps build test interop

build: deps
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTP_TESTS=OFF >/dev/null
	@cmake --build build/release -j $(JOBS)

build-asan: deps
	@cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DTP_SANITIZE=ON >/dev/null
	@cmake --build build/asan -j $(JOBS)

build-fuzz: deps
	@CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTP_FUZZ=ON -DTP_TESTS=OFF >/dev/null
	@cmake --build build/fuzz -j $(JOBS) --target fuzzers

run: build
	./build/release/turnpike -c $(CONFIG)

# Unit tests (cmocka), integration tests (testkit, real peers) and a short fuzz run, all under ASan+UBSan.
test: build build-asan build-fuzz
	@$(MAKE) --no-print-directory unit integration fuzz-smoke lint-check

unit:
	@cd build/asan && ctest --output-on-failure

integration:
	@cd testkit && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error; }
	@cd testkit && rm -rf dist && npx tsc -p .
	@TURNPIKE_BUILD=$(CURDIR)/build/asan node --test --test-concurrency=1 testkit/dist/tests/

fuzz-smoke:
	@scripts/fuzz-run $(FUZZ_SECONDS)

fuzz: build-fuzz
	@scripts/fuzz-run $${FUZZ_SECONDS:-300}

bench:
	@scripts/install-deps build bench
	@cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DTP_TESTS=OFF -DTP_BENCH_TOOLS=ON >/dev/null
	@cmake --build build/release -j $(JOBS)
	@bench/run

lint: build-asan
	@$(MAKE) --no-print-directory lint-check

lint-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')
	@clang-tidy -p build/asan --quiet $$(git ls-files 'src/*.c' 'apps/*.c' 'examples/*.c' 'tools/*.c' 'tests/apps/*.c') 2>&1 | { grep -E 'error|warning: [^0-9]' || true; } | tee build/tidy.log
	@[ ! -s build/tidy.log ] || { echo "clang-tidy found problems (above)"; exit 1; }
	@echo "lint: clang-format and clang-tidy clean"

clean:
	rm -rf build testkit/dist
