#!/bin/bash
# `make bench`: the limits, each stage alone, the four stages end to end at a
# paced load, and cost growth with scopes and partitions, all against one
# sg-broker and one private redis-server; then the peers (the same windowed
# job on spendguard, Flink and Kafka Streams, on a real Kafka broker).
# Method: docs/performance.md.
# Prints a table, writes bench/results.json, and ends with the line
#   bench: limit_eps=N ingest_eps=N ingest_ratio=R aggregate_eps=N ...
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-build-bench/bin}
N=${SG_BENCH_EVENTS:-500000}          # input events for the limit and ingest
AGG_N=${SG_BENCH_AGG_EVENTS:-1000000} # normalized events for aggregate (32 partitions)
SNAP_N=${SG_BENCH_SNAPSHOTS:-200000}  # snapshots for rules and sink
DEC_N=${SG_BENCH_DECISIONS:-20000}    # decisions for sink
SCALE_N=${SG_BENCH_SCALE_EVENTS:-80000} # per cost-growth run (1 partition: ~88k fit)
SCALE_SNAP_N=${SG_BENCH_SCALE_SNAPSHOTS:-120000} # rules per cost-growth run
STEPS=${SG_BENCH_STEPS:-10000:10,25000:10,50000:30,75000:10,100000:10}
FIXED_RATE=${SG_BENCH_RATE:-50000}    # the step whose latency is the headline
# Before the steps, a load that is not reported: the first decisions after
# the stages start come 1-2 s late (the first records through each hop;
# docs/performance.md), a start-up cost, not a load's.
WARMUP=${SG_BENCH_WARMUP-10000:5}
CHANNELS=20
CAMPAIGNS=100                         # per channel: 2,000 campaigns
FRAUD=5                               # channels with 50% bot clicks (rules)
E2E_FRAUD=10                          # end to end: channels whose bots ...
FRAUD_PERIOD=3                        # ... come and go every 3 s: triggers
OUT=${SG_BENCH_OUT:-bench/results.json}
# SG_BENCH_PHASES: a subset of "stages scale e2e peers" (limits run with
# stages; peers: spendguard, Flink and Kafka Streams on a real Kafka broker,
# bench/peers/phase.sh).
PHASES=${SG_BENCH_PHASES:-stages scale e2e peers}
want() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
D=$(mktemp -d /tmp/sg-bench-XXXXXX)
pids=""
cleanup() {
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for p in $pids; do wait "$p" 2>/dev/null || true; done
        if [ -n "${SG_BENCH_KEEP:-}" ]; then
                echo "bench: logs kept in $D" >&2
        else
                rm -rf "$D"
        fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now_ms() { date +%s%3N; }
# cpu_s PID: the CPU seconds (user + system) a running process has used.
TICK=$(getconf CLK_TCK)
cpu_s() {
        awk -v t="$TICK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' \
                "/proc/$1/stat"
}
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() {
        echo "bench: $*" >&2
        exit 1
}
# stop PID: SIGTERM, wait for it, forget it.
stop() {
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
        pids=$(echo "$pids" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}
T0=$(now_ms)

# --------------------------------------------------------------- infra
redis-server --port 0 --unixsocket "$D/redis.sock" --save "" \
        --appendonly no --dir "$D" >"$D/redis.log" 2>&1 &
REDIS_PID=$!
pids="$REDIS_PID $pids"
# Every phase has its own topics on the one broker; input topics have 16
# partitions so that a preload fits the mock's ~5 MiB per partition. The
# end-to-end conversions topic has 4: the watermark waits for an event past
# the window from every input partition, and 16 partitions of 0.5% of the
# traffic would each see one only every ~300 ms at 10k/s.
topics=""
for t in bi.imp:16 bi.clk:16 bi.conv:16 bi.events:16 b.dead:4 \
        ba.events:32 ba.aggs:4 br.aggs:4 br.rdec:4 br.dec:4 br.out:4 \
        br.kpis:4 s1.events:4 s2.events:4 s3.events:4 p1.events:1 \
        p4.events:4 s.aggs:4 rs1.aggs:4 rs2.aggs:4 rs3.aggs:4 rp1.aggs:1 \
        rp4.aggs:4 rs.dec:4 be.imp:16 be.clk:16 be.conv:4 be.events:16 \
        be.aggs:4 be.dec:4 be.out:4 be.kpis:4; do
        topics="$topics -t $t"
done
# shellcheck disable=SC2086
"$BIN/sg-broker" $topics --bootstrap-file "$D/bootstrap" \
        >"$D/broker.log" 2>&1 &
BROKER_PID=$!
pids="$BROKER_PID $pids"
i=0
until [ -s "$D/bootstrap" ] && redis-cli -s "$D/redis.sock" ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 200 ] || die "broker or redis did not start"
        sleep 0.05
done
BROKERS=$(head -n 1 "$D/bootstrap")
unset SG_BROKERS SG_REDIS SG_GROUP_PREFIX SG_CONFIG
export SG_METRICS_LISTEN=off SG_LOG_LEVEL=warn

cat >"$D/rules.yaml" <<'EOF'
rules:
  - id: ivt_circuit_breaker
    scope: channel
    metric: ivt_rate
    op: ">"
    threshold: 0.25
    min_clicks: 100
    window: 10s
    action: PAUSE
  - id: ivt_alert
    scope: channel
    metric: ivt_rate
    op: ">"
    threshold: 0.25
    min_clicks: 100
    window: 10s
    action: ALERT
  - id: cpa_overrun
    scope: channel
    metric: cpa
    op: ">"
    target_factor: 1.3
    min_clicks: 100
    min_spend_micros: 50000000
    window: 10s
    action: PAUSE
EOF

# conf NAME GROUP_PREFIX imp clk conv events aggs decisions out kpis
conf() {
        f="$D/conf-$1.yaml"
        cat >"$f" <<EOF
brokers: $BROKERS
redis: unix://$D/redis.sock
group_prefix: $2
schemas_dir: $ROOT/schemas
log_level: warn
kafka:
  fetch.wait.max.ms: 10
topics:
  impressions: $3
  clicks: $4
  conversions: $5
  events: $6
  deadletter: b.dead
  aggregates: $7
  decisions: $8
  out_decisions: $9
  kpis: ${10}
ingest:
  idle_ms: 1000
  bot_ua_file: $ROOT/config/bot_ua.txt
  dc_cidr_file: $ROOT/config/dc_cidr.txt
# Small windows so that decisions come within a second or two of their
# events (docs/performance.md): 1 s buckets, no allowed lateness.
aggregate:
  bucket_s: 1
  windows: 10s
  early_windows: 10s # running windows: the default, 1m, is not in windows
  snapshot_s: 1
  kpi_window_s: 10
  lateness_s: 0
rules:
  file: $D/rules.yaml
metrics:
  listen: "off"
channels:
EOF
        for c in $(seq 0 $((CHANNELS - 1))); do
                printf '  - name: ch%02d\n    budget_micros: 100000000000\n    target_cpa_micros: 5000000\n' "$c" >>"$f"
        done
        echo "$f"
}

M="$D/measures.txt" # one line per measure: name key=value ...
: >"$M"
measure() { echo "$*" >>"$M"; }

# alone NAME STAGE CONFIG GROUP EXPECT TOPIC... : runs one stage over its
# preloaded input until its group has committed EXPECT records.
alone() {
        name=$1 stage=$2 cfg=$3 group=$4 expect=$5
        shift 5
        targs=""
        for t in "$@"; do targs="$targs --topic $t"; done
        SG_CONFIG=$cfg "$BIN/sg-$stage" >"$D/$name.log" 2>&1 &
        sp=$!
        pids="$sp $pids"
        # shellcheck disable=SC2086
        if ! r=$("$BIN/sg-bench-watch" -c "$cfg" --group "$group" $targs \
                --expect "$expect" --pid "$sp" --also "$REDIS_PID" \
                --timeout 180 2>>"$D/$name.log"); then
                tail -5 "$D/$name.log" >&2
                die "$name did not finish"
        fi
        stop "$sp"
        measure "$name $r"
        log "$name: $r"
}
redis_mem() {
        redis-cli -s "$D/redis.sock" info memory |
                sed -n 's/^used_memory:\([0-9]*\).*/\1/p'
}

# ------------------------------------------------------- 1. the limits
if want stages; then
        log "redis limits"
        RB="redis-benchmark -s $D/redis.sock --csv"
        rb_rps() { $RB "$@" | tail -n 1 | cut -d, -f2 | tr -d '"'; }
        measure "redis_hincrby rps=$(rb_rps -n 200000 -P 64 -r 100000 hincrby 'b:__rand_int__' impressions 1)"
        measure "redis_pfadd rps=$(rb_rps -n 200000 -P 64 -r 100000 pfadd 'u:__rand_int__' 'd__rand_int__')"
        measure "redis_zadd rps=$(rb_rps -n 200000 -P 64 -r 100000 zadd 'bi:__rand_int__' 1000 '__rand_int__')"
        sha=$(redis-cli -s "$D/redis.sock" script load "$(cat bench/apply_like.lua)")
        # 100 entries (9 commands each) per call.
        measure "redis_evalsha calls_ps=$(rb_rps -n 1000 -r 1000 evalsha "$sha" 1 'p__rand_int__' 100) entries_per_call=100 cmds_per_entry=9"
        redis-cli -s "$D/redis.sock" flushall >/dev/null

        log "preload $N input events (limit, ingest)"
        CI=$(conf ingest bi bi.imp bi.clk bi.conv bi.events x x x x)
        r=$("$BIN/sg-bench-preload" -c "$CI" --what input --events "$N" \
                --channels $CHANNELS --campaigns $CAMPAIGNS) || die "preload failed"
        measure "preload_input $r"
        log "bare consumer"
        r=$("$BIN/sg-bench-consume" -c "$CI" --topic bi.imp --topic bi.clk \
                --topic bi.conv --expect "$N") || die "bare consumer failed"
        measure "limit_input $r"
        log "limit: $r"

        # ------------------------------------------------- 2. each stage alone
        alone ingest ingest "$CI" bi.ingest "$N" bi.imp bi.clk bi.conv
        log "check: sg.events holds the $N events"
        held=$("$BIN/sg-bench-consume" -c "$CI" --topic bi.events --expect "$N" 2>/dev/null) ||
                die "sg.events does not hold the $N events ingest should have written"
        measure "limit_events_from_ingest $held"

        CA=$(conf aggregate ba bi.imp bi.clk bi.conv ba.events ba.aggs x x x)
        r=$("$BIN/sg-bench-preload" -c "$CA" --what events --events "$AGG_N" \
                --channels $CHANNELS --campaigns $CAMPAIGNS) || die "preload failed"
        measure "preload_events $r"
        # sg.events also holds ingest's watermark markers (as preload
        # writes them): aggregate's group commits past them too.
        AGG_MARKERS=$(echo "$r" | sed -n 's/.*markers=\([0-9]*\).*/\1/p')
        log "bare consumer on sg.events"
        r=$("$BIN/sg-bench-consume" -c "$CA" --topic ba.events --expect "$AGG_N") ||
                die "bare consumer failed"
        measure "limit_events $r"
        redis-cli -s "$D/redis.sock" flushall >/dev/null
        alone aggregate aggregate "$CA" ba.aggregate $((AGG_N + AGG_MARKERS)) ba.events
        measure "aggregate_events events=$AGG_N markers=$AGG_MARKERS"
        measure "aggregate_redis used_memory=$(redis_mem)"

        CR=$(conf rules br bi.imp bi.clk bi.conv x br.aggs br.rdec br.out br.kpis)
        CS=$(conf sink br bi.imp bi.clk bi.conv x br.aggs br.dec br.out br.kpis)
        "$BIN/sg-bench-preload" -c "$CR" --what snapshots --events "$SNAP_N" \
                --channels $CHANNELS --campaigns $CAMPAIGNS --fraud $FRAUD >/dev/null ||
                die "preload failed"
        "$BIN/sg-bench-preload" -c "$CS" --what decisions --events "$DEC_N" \
                --channels $CHANNELS >/dev/null || die "preload failed"
        redis-cli -s "$D/redis.sock" flushall >/dev/null
        alone rules rules "$CR" br.rules "$SNAP_N" br.aggs
        alone sink sink "$CS" br.sink $((SNAP_N + DEC_N)) br.aggs br.dec
fi

# ------------------------------------------------------ 4. cost growth
if want scale; then
        log "cost growth: scopes and partitions"
        for run in s1:5:4 s2:500:4 s3:5000:4 p1:$CAMPAIGNS:1 p4:$CAMPAIGNS:4; do
                IFS=: read -r tag camps parts <<<"$run"
                scopes=$((CHANNELS * camps))
                cfg=$(conf "agg-$tag" "$tag" bi.imp bi.clk bi.conv "$tag.events" s.aggs x x x)
                # A run of 80,000 events ends before the first checkpoint
                # (1 s), and sg-bench-watch times from the first commit:
                # these runs checkpoint every 100 ms.
                sed -i 's/^  lateness_s: 0$/  lateness_s: 0\n  checkpoint_ms: 100/' "$cfg"
                r=$("$BIN/sg-bench-preload" -c "$cfg" --what events --events "$SCALE_N" \
                        --channels $CHANNELS --campaigns "$camps") ||
                        die "preload $tag failed"
                mk=$(echo "$r" | sed -n 's/.*markers=\([0-9]*\).*/\1/p')
                redis-cli -s "$D/redis.sock" flushall >/dev/null
                alone "scale_aggregate_$tag" aggregate "$cfg" "$tag.aggregate" \
                        $((SCALE_N + mk)) "$tag.events"
                measure "scale_markers_$tag events=$SCALE_N markers=$mk"
                measure "scale_redis_$tag scopes=$scopes partitions=$parts used_memory=$(redis_mem)"
                rtag=r$tag
                cfg=$(conf "rules-$tag" "$rtag" bi.imp bi.clk bi.conv x "$rtag.aggs" rs.dec x x)
                "$BIN/sg-bench-preload" -c "$cfg" --what snapshots --events "$SCALE_SNAP_N" \
                        --channels $CHANNELS --campaigns "$camps" --fraud $FRAUD \
                        >/dev/null || die "preload $rtag failed"
                alone "scale_rules_$tag" rules "$cfg" "$rtag.rules" "$SCALE_SNAP_N" "$rtag.aggs"
                measure "scale_$tag scopes=$scopes partitions=$parts"
        done
fi

# ------------------------------------------------------- 3. end to end
if want e2e; then
        log "end to end: steps $STEPS"
        redis-cli -s "$D/redis.sock" flushall >/dev/null
        # The latency probe needs a trigger that recurs: an ALERT fires once
        # per episode, so E2E_FRAUD channels send bots for FRAUD_PERIOD s,
        # then none for FRAUD_PERIOD s (staggered), and the rules look at 2 s
        # windows. Each on-phase of each such channel is one ALERT (plus the
        # breaker's PAUSE or RESUME when due); every decision is a sample.
        sed -e 's/window: 10s/window: 2s/' -e 's/min_clicks: 100/min_clicks: 20/' \
                "$D/rules.yaml" >"$D/rules-e2e.yaml"
        CE=$(conf e2e be be.imp be.clk be.conv be.events be.aggs be.dec be.out be.kpis)
        # Early trips off: the latency measured is the whole path of a
        # complete window (window end to decision), for every decision;
        # `make quality` measures the early trips.
        sed -i -e 's/^  windows: 10s$/  windows: 2s/' \
                -e 's/^  early_windows: 10s.*$/  early_windows: 2s\n  early_ms: 0/' \
                -e "s#^  file: $D/rules.yaml\$#  file: $D/rules-e2e.yaml#" "$CE"
        grep -q 'rules-e2e.yaml' "$CE" || die "e2e config: rules file not set"
        grep -q '^  early_ms: 0' "$CE" || die "e2e config: early trips not off"
        e2e_pids=""
        for s in ingest aggregate rules sink; do
                SG_CONFIG=$CE "$BIN/sg-$s" >"$D/e2e-$s.log" 2>&1 &
                e2e_pids="$! $e2e_pids"
        done
        "$BIN/sg-bench-latency" -c "$CE" -t "$D/trace.txt" >"$D/latency.txt" 2>"$D/latency.log" &
        lat_pid=$!
        pids="$lat_pid $e2e_pids $pids"
        # The stages join their groups before the clock starts: a decision
        # waits for every one of them.
        sleep "${SG_BENCH_JOIN_S:-6}"
        # Where the CPU goes end to end: each process's CPU seconds over
        # the steps (the broker is sg-broker, librdkafka's mock cluster).
        cpu_procs="broker:$BROKER_PID redis:$REDIS_PID latency:$lat_pid"
        set -- $e2e_pids
        for s in sink rules aggregate ingest; do
                cpu_procs="$cpu_procs $s:$1"
                shift
        done
        cpu0=""
        for np in $cpu_procs; do cpu0="$cpu0 $(cpu_s "${np#*:}")"; done
        /usr/bin/time -f "%U %S" -o "$D/gen.time" \
                "$BIN/sg-bench-preload" -c "$CE" --what input --channels $CHANNELS \
                --campaigns $CAMPAIGNS --fraud $E2E_FRAUD \
                --fraud-period $FRAUD_PERIOD --steps "${WARMUP:+$WARMUP,}$STEPS" \
                >"$D/steps.txt" 2>"$D/e2e-gen.log" || die "paced producer failed"
        # Decisions of the last windows still in flight: give them 5 s.
        sleep 5
        line="e2e_cpu generator=$(awk '{ printf "%.2f", $1 + $2 }' "$D/gen.time")"
        set -- $cpu0
        for np in $cpu_procs; do
                line="$line ${np%%:*}=$(awk -v a="$(cpu_s "${np#*:}")" -v b="$1" \
                        'BEGIN { printf "%.2f", a - b }')"
                shift
        done
        measure "$line"
        for p in $lat_pid $e2e_pids; do stop "$p"; done
fi

# ------------------------------------------------------------ 5. peers
if want peers; then
        log "peers: the same windowed job on spendguard, Flink and Kafka Streams"
        redis-cli -s "$D/redis.sock" flushall >/dev/null
        BIN=$BIN D=$D REDIS_SOCK=$D/redis.sock REDIS_PID=$REDIS_PID \
                bench/peers/phase.sh >>"$M" || die "peers phase failed (logs: SG_BENCH_KEEP=1)"
fi

: >>"$D/steps.txt"
: >>"$D/latency.txt"
python3 bench/report.py "$M" "$D/steps.txt" "$D/latency.txt" "$OUT" \
        "$FIXED_RATE" "$E2E_FRAUD" "$(($(now_ms) - T0))" "$FRAUD_PERIOD" \
        "$([ -n "$WARMUP" ] && echo 1 || echo 0)"
