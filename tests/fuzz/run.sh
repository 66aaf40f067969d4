#!/bin/sh
# Runs every libFuzzer harness of a fuzz build for SECONDS each, PAR at a
# time, niced. Each harness starts from its seed corpus in the repository
# (tests/fuzz/corpus/<h>, read only) plus what earlier runs found
# (<build>/fuzz/corpus/<h>). Crashes, leaks, timeouts and out-of-memory
# stop that harness and leave the input in <build>/fuzz/artifacts/.
# Prints one line per harness with its executions, and fails if any found
# something.
#
# usage: tests/fuzz/run.sh BUILD_DIR [SECONDS [PAR [HARNESS...]]]
set -u

build=$1
secs=${2:-600}
par=${3:-2}
shift $(($# < 3 ? $# : 3))
src=$(cd "$(dirname "$0")" && pwd)
out=$build/fuzz
harnesses=${*:-"avro_input json_input normalized conf rules redact"}

mkdir -p "$out/artifacts"

run_one() {
        h=$1
        mkdir -p "$out/corpus/$h"
        dict=""
        [ -f "$src/dict/$h.dict" ] && dict="-dict=$src/dict/$h.dict"
        # -timeout: one input taking more than 10 s is a hang.
        # -rss_limit_mb: a bounded decoder never needs 2 GiB.
        # shellcheck disable=SC2086
        nice -n 10 "$out/fuzz_$h" -max_total_time="$secs" -timeout=10 \
                -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$out/artifacts/$h-" $dict \
                "$out/corpus/$h" "$src/corpus/$h" >"$out/$h.log" 2>&1
        echo $? >"$out/$h.rc"
}

started=$(date +%s)
running=0
for h in $harnesses; do
        [ -x "$out/fuzz_$h" ] || { echo "fuzz: $out/fuzz_$h not built" >&2; exit 1; }
        run_one "$h" &
        running=$((running + 1))
        if [ "$running" -ge "$par" ]; then
                wait
                running=0
        fi
done
wait

fail=0
for h in $harnesses; do
        rc=$(cat "$out/$h.rc")
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$h.log" | tail -1)
        secs_run=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out/$h.log" | tail -1)
        corpus=$(ls "$out/corpus/$h" | wc -l)
        if [ "$rc" = 0 ]; then
                echo "fuzz: $h ok execs=${execs:-?} seconds=${secs_run:-?} corpus=$corpus"
        else
                echo "fuzz: $h FAILED rc=$rc execs=${execs:-?} (log: $out/$h.log)"
                grep -m3 -E 'ERROR: |SUMMARY: |Test unit written' "$out/$h.log" | sed 's/^/fuzz:   /'
                fail=1
        fi
done
echo "fuzz: wall $(($(date +%s) - started)) s, ${secs} s per harness, $par at a time"
exit $fail
