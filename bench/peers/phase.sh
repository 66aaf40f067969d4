#!/bin/bash
# The peers phase of `make bench` (bench/run.sh, SG_BENCH_PHASES=peers, or
# `make peers`): the same windowed job three ways over the same preloaded
# input on one real Apache Kafka broker (tools/kafka.sh): spendguard's
# ingest + aggregate, Flink (FlinkJob) and Kafka Streams (StreamsApp, with
# exactly_once_v2 and with at_least_once), each alone, one after another.
# Prints one measure line per run and the agreement check (check.py) on
# stdout, for bench/report.py. Method: docs/performance.md "Peers".
#
# Environment: BIN (spendguard binaries), D (a scratch dir, kept by the
# caller), REDIS_SOCK (a private redis-server's socket: aggregate's
# checkpoint), REDIS_PID, SG_BENCH_PEERS_EVENTS (3000000),
# SG_BENCH_PEERS_RATE (events per second of event time, 50000: at 20000
# Kafka Streams drops some of a preloaded backlog as late, see
# docs/performance.md "Peers"),
# SG_BENCH_PEERS_LATENESS (s, 30: aggregate.lateness_s, Flink's
# out-of-orderness and Kafka Streams' grace), SG_BENCH_PEERS_PACED (the
# latency runs' load, rate:seconds, 20000:30, or off),
# SG_BENCH_PEERS_PACED_LATENESS (their lateness, 2 s).
set -eu
cd "$(dirname "$0")/../.."
ROOT=$PWD
: "${BIN:?}" "${D:?}" "${REDIS_SOCK:?}" "${REDIS_PID:?}"
N=${SG_BENCH_PEERS_EVENTS:-3000000}
RATE=${SG_BENCH_PEERS_RATE:-50000}
LATE=${SG_BENCH_PEERS_LATENESS:-30}
PACED=${SG_BENCH_PEERS_PACED:-20000:30} # rate:seconds of the latency runs, or off
PLATE=${SG_BENCH_PEERS_PACED_LATENESS:-2}
CHANNELS=20
CAMPAIGNS=100
P="$D/peers"
mkdir -p "$P"
log() { printf '%s peers: %s\n' "$(date +%T)" "$*" >&2; }
die() {
        echo "peers: $*" >&2
        exit 1
}
TICK=$(getconf CLK_TCK)
cpu_s() {
        awk -v t="$TICK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' \
                "/proc/$1/stat"
}
diff_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
free_port() {
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# The peers' jar and its runtime jars (pinned in bench/peers/pom.xml),
# cached by the pom's checksum: only the first run needs Maven Central.
cache="${SG_KAFKA_CACHE:-${HOME:-/tmp}/.cache/spendguard}/peers-$(sha1sum bench/peers/pom.xml | cut -c1-12)"
if [ ! -f "$cache/complete" ]; then
        log "fetching the peers' jars (Maven Central) into $cache"
        mkdir -p "$cache"
        mvn -q -B -f bench/peers/pom.xml dependency:copy-dependencies \
                -DincludeScope=runtime -DoutputDirectory="$cache/libs" >&2 ||
                die "mvn could not fetch the peers' jars"
        touch "$cache/complete"
fi
log "building bench/peers"
mvn -q -B -f bench/peers/pom.xml package >&2 || die "bench/peers does not build"
CP="$ROOT/bench/peers/target/bench-peers-1.jar:$cache/libs/*"
# The JVMs' defaults (heap: a quarter of RAM, G1), less logging.
JAVA=(java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$CP")

# ------------------------------------------------------------ the broker
KD="$P/kafka"
BS=$(tools/kafka.sh start "$KD") || die "the Kafka broker did not start"
KPID=$(cat "$KD/kafka.pid")
# On any exit: the runs still in the background (bg), then the broker.
bg=""
trap 'for p in $bg; do kill -TERM "$p" 2>/dev/null || true; done
for p in $bg; do wait "$p" 2>/dev/null || true; done
tools/kafka.sh stop "$KD" || true' EXIT
log "Apache Kafka at $BS (pid $KPID)"
"${JAVA[@]}" sg.peers.Tool create "$BS" pk.imp:16 pk.clk:16 pk.conv:16 \
        pk.events:16 pk.aggs:4 pk.dead:4 pk.flink:4 pk.ks-eos:4 \
        pk.ks-alos:4 >"$P/create.log" 2>&1 || die "topics: see $P/create.log"

C="$P/spendguard.yaml"
cat >"$C" <<YAML
brokers: $BS
redis: unix://$REDIS_SOCK
group_prefix: pk
schemas_dir: $ROOT/schemas
log_level: warn
kafka:
  fetch.wait.max.ms: 10
topics:
  impressions: pk.imp
  clicks: pk.clk
  conversions: pk.conv
  events: pk.events
  deadletter: pk.dead
  aggregates: pk.aggs
ingest:
  idle_ms: 1000
  bot_ua_file: $ROOT/config/bot_ua.txt
  dc_cidr_file: $ROOT/config/dc_cidr.txt
# The peers' job: 10 s tumbling windows (the KPI windows), one 10 s
# rolling window, snapshots every 10 s of event time.
aggregate:
  bucket_s: 10
  windows: 10s
  early_windows: 10s
  snapshot_s: 10
  kpi_window_s: 10
  lateness_s: $LATE
metrics:
  listen: "off"
YAML

log "preload $N input events ($RATE per second of event time)"
r=$("$BIN/sg-bench-preload" -c "$C" --what input --events "$N" \
        --channels $CHANNELS --campaigns $CAMPAIGNS --event-rate "$RATE") ||
        die "preload failed"
echo "peers_preload $r lateness_s=$LATE rate=$RATE"

# ------------------------------------------------------------ spendguard
log "spendguard: ingest + aggregate"
redis-cli -s "$REDIS_SOCK" flushall >/dev/null
k0=$(cpu_s "$KPID")
pi=$(free_port)
pa=$(free_port)
SG_CONFIG=$C SG_METRICS_LISTEN=127.0.0.1:$pi "$BIN/sg-ingest" >"$P/ingest.log" 2>&1 &
ing=$!
SG_CONFIG=$C SG_METRICS_LISTEN=127.0.0.1:$pa "$BIN/sg-aggregate" >"$P/aggregate.log" 2>&1 &
agg=$!
bg="$ing $agg"
r=$(python3 bench/peers/measure.py "$N" "http://127.0.0.1:$pi/metrics" \
        "http://127.0.0.1:$pa/metrics" "ingest:$ing" "aggregate:$agg" \
        "redis:$REDIS_PID") || r=""
# Measured; now let the idle markers (ingest.idle_ms 1 s) reach aggregate,
# whose watermark then closes the windows the end of input closes, in
# every sg.events partition, before the stop.
sleep 5
for p in $ing $agg; do kill -TERM "$p" 2>/dev/null || true; done
wait $ing $agg 2>/dev/null || true
bg=""
[ -n "$r" ] || die "spendguard was not measured; see $P/*.log"
echo "peers_spendguard $r broker_cpu_s=$(diff_s "$(cpu_s "$KPID")" "$k0")"
log "spendguard: $r"
"${JAVA[@]}" sg.peers.Tool finals "$BS" pk.aggs "$ROOT/schemas" >"$P/sg.rows" 2>"$P/dump.log" ||
        die "reading pk.aggs failed"

# ----------------------------------------------------------------- peers
# peer NAME MAIN OUT ARGS...: one JVM peer over the input, its rows to OUT.
peer() {
        name=$1 main=$2 out=$3
        shift 3
        log "$name"
        k0=$(cpu_s "$KPID")
        # /usr/bin/time: the whole JVM's CPU, start-up and shutdown included.
        r=$(/usr/bin/time -f "%U %S" -o "$P/$name.time" "${JAVA[@]}" \
                "sg.peers.$main" "$BS" "$ROOT/schemas" "$out" "$LATE" "$N" "$@" \
                2>"$P/$name.log") || {
                tail -5 "$P/$name.log" >&2
                die "$name failed"
        }
        echo "peers_$name $r broker_cpu_s=$(diff_s "$(cpu_s "$KPID")" "$k0")" \
                "process_cpu_s=$(awk '{ printf "%.2f", $1 + $2 }' "$P/$name.time")"
        log "$name: $r"
        "${JAVA[@]}" sg.peers.Tool rows "$BS" "$out" >"$P/$name.rows" 2>>"$P/dump.log" ||
                die "reading $out failed"
}
peer flink FlinkJob pk.flink pk.imp pk.clk pk.conv
peer ks_eos StreamsApp pk.ks-eos exactly_once_v2 pk.imp pk.clk pk.conv
peer ks_alos StreamsApp pk.ks-alos at_least_once pk.imp pk.clk pk.conv

python3 bench/peers/check.py "$N" sg="$P/sg.rows" flink="$P/flink.rows" \
        ks_eos="$P/ks_eos.rows" ks_alos="$P/ks_alos.rows"

# ------------------------------------------------------- paced: latency
# Each run again, alone, on topics of its own, now at a paced load
# (sg-bench-preload --steps: event time = the scheduled send time) with a
# short lateness, while Tool arrivals reads its output topic: latency =
# a closed window's row read (read_committed) - the window's end.
[ "$PACED" = off ] && exit 0
# paced NAME KIND(rows|finals) OUT_TOPIC CMD...: runs CMD (the run, in the
# background) over topics qNAME.*, paced, and prints its latency line.
paced() {
        name=$1 kind=$2 out=$3
        shift 3
        log "paced $PACED: $name"
        pc="$P/paced-$name.yaml"
        printf 'brokers: %s
schemas_dir: %s
log_level: warn
topics:
  impressions: q%s.imp
  clicks: q%s.clk
  conversions: q%s.conv
' \
                "$BS" "$ROOT/schemas" "$name" "$name" "$name" >"$pc"
        if [ "$kind" = finals ]; then
                set -- "${JAVA[@]}" sg.peers.Tool arrivals "$BS" "$out" "$ROOT/schemas"
        else
                set -- "${JAVA[@]}" sg.peers.Tool arrivals "$BS" "$out"
        fi
        "$@" >"$P/$name.arr" 2>>"$P/dump.log" &
        arr=$!
        sleep 3
        eval "$RUN_CMD" >"$P/paced-$name.log" 2>&1 &
        run=$!
        bg="$RUN_PIDS_EXTRA $run $arr"
        sleep "${SG_BENCH_PEERS_JOIN_S:-10}"
        "$BIN/sg-bench-preload" -c "$pc" --what input --channels $CHANNELS \
                --campaigns $CAMPAIGNS --steps "$PACED" >"$P/paced-$name.steps" ||
                die "paced producer failed"
        sleep $((PLATE + 5))
        kill -TERM $RUN_PIDS_EXTRA $run 2>/dev/null || true
        wait $RUN_PIDS_EXTRA $run 2>/dev/null || true
        kill -TERM $arr 2>/dev/null || true
        wait $arr 2>/dev/null || true
        bg=""
        echo "peers_latency_$name $(python3 bench/peers/latency.py "$P/$name.arr") lateness_s=$PLATE load=$PACED"
}
for q in sg flink ks_eos ks_alos; do
        t="q$q.imp:16 q$q.clk:16 q$q.conv:16 q$q.out:4"
        [ $q = sg ] && t="$t q$q.events:16 q$q.aggs:4 q$q.dead:4"
        # shellcheck disable=SC2086
        "${JAVA[@]}" sg.peers.Tool create "$BS" $t >>"$P/create.log" 2>&1 ||
                die "topics: see $P/create.log"
done
sed -e "s/ pk\./ qsg./" -e "s/^group_prefix: pk/group_prefix: qsg/" \
        -e "s/^  lateness_s: .*/  lateness_s: $PLATE/" "$C" >"$P/paced-sg-stage.yaml"
redis-cli -s "$REDIS_SOCK" flushall >/dev/null
# spendguard: ingest in the background of aggregate (RUN_PIDS_EXTRA).
SG_CONFIG=$P/paced-sg-stage.yaml SG_METRICS_LISTEN=off "$BIN/sg-ingest" >"$P/paced-ingest.log" 2>&1 &
RUN_PIDS_EXTRA=$!
bg=$RUN_PIDS_EXTRA
RUN_CMD='SG_CONFIG=$P/paced-sg-stage.yaml SG_METRICS_LISTEN=off exec "$BIN/sg-aggregate"'
paced sg finals qsg.aggs
RUN_PIDS_EXTRA=""
for q in flink ks_eos ks_alos; do
        case $q in
        flink) RUN_CMD='exec "${JAVA[@]}" sg.peers.FlinkJob "$BS" "$ROOT/schemas" qflink.out "$PLATE" 0 qflink.imp qflink.clk qflink.conv' ;;
        ks_eos) RUN_CMD='exec "${JAVA[@]}" sg.peers.StreamsApp "$BS" "$ROOT/schemas" qks_eos.out "$PLATE" 0 exactly_once_v2 qks_eos.imp qks_eos.clk qks_eos.conv' ;;
        ks_alos) RUN_CMD='exec "${JAVA[@]}" sg.peers.StreamsApp "$BS" "$ROOT/schemas" qks_alos.out "$PLATE" 0 at_least_once qks_alos.imp qks_alos.clk qks_alos.conv' ;;
        esac
        paced $q rows "q$q.out"
done
