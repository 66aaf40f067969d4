# spendguard — front for CMake. `make run` and `make test` are the README's
# quick start; both install missing Debian packages first (tools/deps.sh).

BUILD      ?= build
SAN_BUILD  ?= build-san
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_PAR   ?= 2
JOBS       ?= 2
MAKEFLAGS  += --no-print-directory
CMAKE_ARGS ?=

CHAOS_REPEAT ?= 1

.PHONY: all deps build run test test-fast test-san crash chaos bench peers quality \
	format \
	clean fuzz fuzz-build fuzz-smoke valgrind

all: build

deps:
	@sh tools/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DSG_WERROR=ON $(CMAKE_ARGS) >/dev/null

build: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@tools/run.sh

# The whole suite, then again under AddressSanitizer + UBSan. Label known:
# a review finding's test that fails until its fix lands (ctest -L known).
test: build
	@cd $(BUILD) && ctest --output-on-failure -LE 'crash|chaos|known'
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory fuzz-smoke

test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -L unit

test-san: deps
	@cmake -S . -B $(SAN_BUILD) -DSG_WERROR=ON -DSG_SANITIZE=ON \
		-DCMAKE_BUILD_TYPE=Debug $(CMAKE_ARGS) >/dev/null
	@cmake --build $(SAN_BUILD) -j $(JOBS)
	@cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -LE 'crash|chaos|known'

# libFuzzer harnesses (tests/fuzz): a clang build of the library with
# ASan + UBSan + coverage, each harness run FUZZ_SECONDS, FUZZ_PAR at a time.
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DSG_FUZZ=ON \
		-DSG_TESTS=OFF -DSG_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		$(CMAKE_ARGS) >/dev/null
	@cmake --build $(FUZZ_BUILD) --target fuzzers -j $(JOBS)

fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_PAR)

# What `make test` runs: every harness for a minute, two at a time.
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=60

# Every unit-test binary under valgrind memcheck; any error or leak fails.
valgrind: build
	@tests/valgrind/run.sh $(BUILD)

# SIGKILLs ingest and aggregate 20 times during a run; KPIs must stay exact.
crash: build
	@cd $(BUILD) && ctest --output-on-failure -L crash

# 50 random SIGKILLs of every stage, a Redis restart and a broker outage;
# CHAOS_REPEAT=3 runs it three times in a row, stopping at a failure.
chaos: build
	@cd $(BUILD) && ctest --output-on-failure -L chaos \
		--repeat until-fail:$(CHAOS_REPEAT)

# A release build of its own (-O3, no tests), then bench/run.sh: about 8-10 min
# (5 without the peers phase).
BENCH_BUILD ?= build-bench
bench: deps
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=OFF \
		-DSG_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS)
	@BIN=$(BENCH_BUILD)/bin bench/run.sh

# The peers phase alone (spendguard, Flink and Kafka Streams: the same
# windowed job on a real Kafka broker; docs/performance.md "Peers"): about
# 6 min, the first run also fetches the jars. Its results go to
# $(BENCH_BUILD)/peers.json, not bench/results.json.
peers: deps
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DSG_TESTS=OFF \
		-DSG_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS)
	@BIN=$(BENCH_BUILD)/bin SG_BENCH_PHASES=peers \
		SG_BENCH_OUT=$${SG_BENCH_OUT:-$(BENCH_BUILD)/peers.json} bench/run.sh

# Fraud incidents in real time against the shipped rules: onset to PAUSE,
# processing delay, invalid spend, healthy pauses (bench/quality.sh,
# docs/rules.md "Measured"): about 5 min.
quality: build
	@BIN=$(BUILD)/bin bench/quality.sh

format:
	@clang-format -i lib/*.[ch] ingest/*.[ch] aggregate/*.[ch] rules/*.[ch] \
		sink/*.[ch] tools/*.c tests/unit/*.c tests/integration/*.[ch] \
		tests/chaos/*.c tests/fuzz/*.[ch]

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
