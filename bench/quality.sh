#!/bin/sh
# `make quality`: how fast and how exactly the shipped rules answer fraud.
# In real time, with the shipped config/rules.yaml and the shipped
# config/spendguard.yaml given more channels (INCIDENTS + HEALTHY), it runs
# sg-broker, a private redis-server, the four stages and sg-bench-latency
# (which reads ad-decisions), then sg-gen --realtime --incidents: one bot
# click wave per incident channel, over the healthy background traffic of
# every channel. bench/quality.py compares what reached ad-decisions with
# sg-gen's truth, prints a table and the line
#   quality: incidents=N onset_to_pause_p50_ms=.. ...
# and writes bench/quality.json. Measures: docs/rules.md, "Measured".
#
# Environment: BIN (default build/bin), SG_QUALITY_INCIDENTS (24),
# SG_QUALITY_HEALTHY (8), SG_QUALITY_SEED (1), SG_QUALITY_OUT
# (bench/quality.json), SG_QUALITY_KEEP (set: keep the logs).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-build/bin}
INCIDENTS=${SG_QUALITY_INCIDENTS:-24}
HEALTHY=${SG_QUALITY_HEALTHY:-8}
SEED=${SG_QUALITY_SEED:-1}
OUT=${SG_QUALITY_OUT:-bench/quality.json}
START=30          # first onset (s): the stages have a minute of history
EVERY=4           # between onsets (s)
RATES=10,20,40,80 # bot clicks/s; a healthy channel makes 10 clicks/s
LENGTHS=45,60,90  # seconds
LONGEST=90
# The last incident ends, then 10 s for its decisions.
DURATION=$((START + (INCIDENTS - 1) * EVERY + LONGEST + 10))
WAIT_S=30 # after sg-gen: for the PAUSE of every incident

D=$(mktemp -d /tmp/sg-quality-XXXXXX)
pids="" # every process this script started, newest first
cleanup() {
        trap - EXIT INT TERM
        set +e
        for p in $pids; do kill -TERM "$p" 2>/dev/null; done
        # Each stage stops within 9 s of SIGTERM (docs/operations.md).
        i=0
        while [ $i -lt 120 ]; do
                left=""
                for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
                [ -z "$left" ] && break
                sleep 0.1
                i=$((i + 1))
        done
        for p in $left; do kill -KILL "$p" 2>/dev/null; done
        for p in $pids; do wait "$p" 2>/dev/null; done
        if [ -n "${SG_QUALITY_KEEP:-}" ]; then
                echo "quality: logs kept in $D" >&2
        else
                rm -rf "$D"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '%s quality: %s\n' "$(date +%T)" "$*" >&2; }
die() {
        echo "quality: $*" >&2
        exit 1
}
start() { # name, then the command
        n=$1
        shift
        "$@" >"$D/$n.log" 2>&1 &
        eval "pid_$n=$!"
        pids="$! $pids"
}
check_alive() { # names...
        for n in "$@"; do
                eval "p=\$pid_$n"
                kill -0 "$p" 2>/dev/null ||
                        die "$n exited: $(tail -n 2 "$D/$n.log")"
        done
}

for b in sg-broker sg-ingest sg-aggregate sg-rules sg-sink sg-gen sg-bench-latency; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing: build first (make build)"
done

# The shipped config with its relative paths made absolute, and
# INCIDENTS + HEALTHY channels: the shipped five, then ch06, ch07, ...
# (budget 10,000, target CPA 15, 20, 25 in turn). One incident per channel:
# the breaker's cooldown (300 s) outlasts the run.
CONF=$D/quality.yaml
sed -e "s#^schemas_dir: .*#schemas_dir: $ROOT/schemas#" \
        -e "s#^  file: rules.yaml\$#  file: $ROOT/config/rules.yaml#" \
        -e "s#^  bot_ua_file: #  bot_ua_file: $ROOT/config/#" \
        -e "s#^  dc_cidr_file: #  dc_cidr_file: $ROOT/config/#" \
        config/spendguard.yaml >"$CONF"
for k in "schemas_dir: $ROOT/schemas" "file: $ROOT/config/rules.yaml" \
        "bot_ua_file: $ROOT/config/" "dc_cidr_file: $ROOT/config/"; do
        grep -q "$k" "$CONF" || die "config: could not set \"$k\""
done
tail -n 1 "$CONF" | grep -q target_cpa_micros ||
        die "config: channels are no longer the file's last section"
shipped=$(grep -c '^  - name: ' "$CONF")
i=$((shipped + 1))
while [ $i -le $((INCIDENTS + HEALTHY)) ]; do
        printf '  - name: ch%02d\n    budget_micros: 10000000000\n    target_cpa_micros: %d\n' \
                $i $((15000000 + 5000000 * (i % 3))) >>"$CONF"
        i=$((i + 1))
done

start redis redis-server --port 0 --unixsocket "$D/redis.sock" --save "" \
        --appendonly no --dir "$D"
start broker "$BIN/sg-broker" --bootstrap-file "$D/bootstrap"
i=0
until [ -s "$D/bootstrap" ] && redis-cli -s "$D/redis.sock" ping >/dev/null 2>&1; do
        check_alive redis broker
        i=$((i + 1))
        [ $i -lt 200 ] || die "broker or redis did not start"
        sleep 0.05
done
SG_BROKERS=$(head -n 1 "$D/bootstrap")
SG_REDIS="unix://$D/redis.sock"
SG_GROUP_PREFIX="quality$$"
SG_CONFIG=$CONF
SG_METRICS_LISTEN=127.0.0.1:0
export SG_BROKERS SG_REDIS SG_GROUP_PREFIX SG_CONFIG SG_METRICS_LISTEN

stages="ingest aggregate rules sink"
for s in $stages; do start "$s" "$BIN/sg-$s"; done
# Ready: /readyz answers 200 on the port each stage logged.
deadline=$(($(date +%s) + 60))
for s in $stages; do
        until p=$(sed -n 's/.*event=http_listen addr=[^ ]*:\([0-9]*\) .*/\1/p' \
                "$D/$s.log" | tail -n 1) && [ -n "$p" ] &&
                curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$p/readyz"; do
                check_alive redis broker $stages
                [ "$(date +%s)" -lt "$deadline" ] || die "sg-$s not ready in 60 s"
                sleep 0.2
        done
done
start latency env SG_METRICS_LISTEN=off "$BIN/sg-bench-latency" -c "$CONF"
sleep 2
log "$((INCIDENTS + HEALTHY)) channels, $INCIDENTS incidents (rates $RATES/s," \
        "lengths $LENGTHS s, every $EVERY s from second $START); ${DURATION} s"
start gen env SG_METRICS_LISTEN=off "$BIN/sg-gen" --realtime \
        --duration "$DURATION" --seed "$SEED" --fraud-channel "" \
        --overrun-channel "" --incidents "$INCIDENTS" --incident-start "$START" \
        --incident-every "$EVERY" --incident-rates "$RATES" \
        --incident-lengths "$LENGTHS" --truth "$D/truth.jsonl"
while kill -0 "$pid_gen" 2>/dev/null; do
        check_alive redis broker $stages latency
        sleep 1
done
wait "$pid_gen" || die "sg-gen failed: $(tail -n 2 "$D/gen.log")"
pids=$(echo "$pids" | tr ' ' '\n' | grep -vx "$pid_gen" | tr '\n' ' ')

# Every incident channel's PAUSE, or WAIT_S s.
chans=$(sed -n 's/^{"incident":{"index":[0-9]*,"channel":"\([^"]*\)".*/\1/p' \
        "$D/truth.jsonl")
deadline=$(($(date +%s) + WAIT_S))
while :; do
        missing=0
        for c in $chans; do
                grep -q " PAUSE [^ ]* $c [0-9]* - " "$D/latency.log" || missing=$((missing + 1))
        done
        [ $missing -eq 0 ] && break
        [ "$(date +%s)" -lt "$deadline" ] || {
                log "$missing incident(s) without a PAUSE after $WAIT_S s"
                break
        }
        sleep 1
done
python3 bench/quality.py "$D/truth.jsonl" "$D/latency.log" "$OUT"
