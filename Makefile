# spendguard — front for CMake. `make run` and `make test` are the README's
# quick start; both install missing Debian packages first (tools/deps.sh).

BUILD      ?= build
SAN_BUILD  ?= build-san
JOBS       ?= 2
MAKEFLAGS  += --no-print-directory
CMAKE_ARGS ?=

CHAOS_REPEAT ?= 1

.PHONY: all deps build run test test-fast test-san crash chaos bench format clean

all: build

deps:
	@sh tools/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DSG_WERROR=ON $(CMAKE_ARGS) >/dev/null

build: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@tools/run.sh

# The whole suite, then again under AddressSanitizer + UBSan.
test: build
	@cd $(BUILD) && ctest --output-on-failure -LE 'crash|chaos'
	@$(MAKE) --no-print-directory test-san

test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -L unit

test-san: deps
	@cmake -S . -B $(SAN_BUILD) -DSG_WERROR=ON -DSG_SANITIZE=ON \
		-DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS) >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)
	@cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -LE 'crash|chaos'

# SIGKILLs ingest and aggregate 20 times during a run; KPIs must stay exact.
crash: build
	@cd $(BUILD) && ctest --output-on-failure -L crash

# 50 random SIGKILLs of every stage, a Redis restart and a broker outage;
# CHAOS_REPEAT=3 runs it three times in a row, stopping at a failure.
chaos: build
	@cd $(BUILD) && ctest --output-on-failure -L chaos \
		--repeat until-fail:$(CHAOS_REPEAT)

bench: build
	@bench/run.sh

format:
	@clang-format -i lib/*.[ch] ingest/*.[ch] aggregate/*.[ch] rules/*.[ch] \
		sink/*.[ch] tools/*.c tests/unit/*.c tests/integration/*.[ch] \
		tests/chaos/*.c

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
