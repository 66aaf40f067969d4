#!/bin/sh
# Runs every unit-test binary of a build under valgrind memcheck, one after
# another, and fails on any error or leak.
#
# Criterion runs each test in a worker process; valgrind follows them
# (--trace-children=yes) but an error found in a worker does not change the
# runner's exit code, so every process logs to its own file and any
# non-empty log (-q: errors only) fails the run.
#
# usage: tests/valgrind/run.sh BUILD_DIR [BINARY...]
set -u

build=$1
shift
src=$(cd "$(dirname "$0")" && pwd)
out=$build/valgrind
bins=${*:-$(ls "$build"/tests/unit_* 2>/dev/null)}

rm -rf "$out"
mkdir -p "$out"
fail=0
for b in $bins; do
        name=$(basename "$b")
        mkdir -p "$out/$name"
        start=$(date +%s)
        SG_SOURCE_DIR=${SG_SOURCE_DIR:-$src/../..} valgrind -q \
                --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible \
                --errors-for-leak-kinds=definite,possible --error-exitcode=1 \
                --trace-children=yes --track-origins=yes \
                --suppressions="$src/spendguard.supp" --gen-suppressions=all \
                --log-file="$out/$name/%p.log" \
                "$b" --jobs 1 >"$out/$name.out" 2>&1
        rc=$?
        bad=$(find "$out/$name" -name '*.log' -size +0 | wc -l)
        # The runner's own verdict: tests found, none failing or crashing.
        if ! grep -Eq 'Synthesis: Tested: [1-9][0-9]* .* Failing: 0 \| Crashing: 0' \
                "$out/$name.out"; then
                [ "$rc" -eq 0 ] && rc=1
        fi
        if [ "$rc" -ne 0 ] || [ "$bad" -ne 0 ]; then
                echo "valgrind: $name FAILED rc=$rc processes_with_errors=$bad (logs: $out/$name)"
                fail=1
        else
                echo "valgrind: $name ok ($(($(date +%s) - start)) s)"
        fi
done
exit $fail
