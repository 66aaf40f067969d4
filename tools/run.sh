#!/bin/sh
# `make run`: the local stack — sg-broker (SG_KAFKA=real: Apache Kafka,
# tools/kafka.sh), a private redis-server, the four
# stages and the sg-gen scenario in real time — with a live per-channel view
# and every decision as it happens. Stops everything on Ctrl-C and when the
# scenario ends. Logs: run/*.log.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
RUN=${RUN_DIR:-run}
DURATION=${SG_RUN_DURATION:-150}
mkdir -p "$RUN"
rm -f "$RUN"/*.log "$RUN"/bootstrap "$RUN"/redis.sock "$RUN"/broker.ctl

pids=""
cleanup() {
        trap - EXIT INT TERM
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for p in $pids; do wait "$p" 2>/dev/null || true; done
        if [ -f "$PWD/$RUN/kafka/kafka.pid" ]; then tools/kafka.sh stop "$PWD/$RUN/kafka"; fi
        echo "run: stopped; logs in $RUN/"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

start() { # name, then the command
        name=$1
        shift
        "$@" >>"$RUN/$name.log" 2>&1 &
        pids="$! $pids"
}

wait_for() { # what, test command...
        what=$1
        shift
        i=0
        until "$@" 2>/dev/null; do
                i=$((i + 1))
                if [ $i -gt 150 ]; then
                        echo "run: $what did not start; see $RUN/" >&2
                        exit 1
                fi
                sleep 0.1
        done
}

start redis redis-server --port 0 --unixsocket "$PWD/$RUN/redis.sock" \
        --save "" --appendonly no --dir "$PWD/$RUN"
if [ "${SG_KAFKA:-mock}" = real ]; then
        # SG_KAFKA=real: Apache Kafka (tools/kafka.sh, docs/broker.md) with
        # the spendguard topics, instead of sg-broker.
        rm -rf "$RUN/kafka"
        tools/kafka.sh start "$PWD/$RUN/kafka" >"$RUN/bootstrap.tmp"
        "$BIN/sg-broker" --create-on "$(cat "$RUN/bootstrap.tmp")" \
                2>>"$RUN/broker.log"
        mv "$RUN/bootstrap.tmp" "$RUN/bootstrap"
else
        start broker "$BIN/sg-broker" --bootstrap-file "$RUN/bootstrap" \
                --control "$RUN/broker.ctl"
fi
wait_for redis-server redis-cli -s "$RUN/redis.sock" ping
wait_for sg-broker test -s "$RUN/bootstrap"

SG_BROKERS=$(head -n 1 "$RUN/bootstrap")
SG_REDIS="unix://$PWD/$RUN/redis.sock"
SG_GROUP_PREFIX="run$$"
SG_CONFIG=${SG_CONFIG:-config/spendguard.yaml}
export SG_BROKERS SG_REDIS SG_GROUP_PREFIX SG_CONFIG
echo "run: broker $SG_BROKERS, redis $SG_REDIS, logs in $RUN/"

for s in ingest aggregate rules sink; do
        start "$s" "$BIN/sg-$s"
done
start gen "$BIN/sg-gen" --realtime --duration "$DURATION" --seed 1
gen_pid=${pids%% *}

# The live view (sg-ctl top) runs until the scenario ends (or Ctrl-C); on
# SIGTERM it shows the cursor again and exits 0.
"$BIN/sg-ctl" top &
top_pid=$!
pids="$top_pid $pids"
while kill -0 "$gen_pid" 2>/dev/null; do sleep 1; done
sleep 3 # let the last events reach the view
kill -TERM "$top_pid" 2>/dev/null || true
wait "$top_pid" 2>/dev/null || true
echo
echo "run: scenario finished. Decisions:"
"$BIN/sg-ctl" decisions --last 20 || true
