#!/bin/sh
# `make bench` (first version): end-to-end throughput of the four stages over
# a preloaded scenario, on the local broker and a private redis-server.
# Preloads the input topics with sg-gen (unpaced), starts the stages, and
# times until `sg-ctl kpis` equals the generator's ground truth.
# The full benchmark (limits, per-stage ratios, latency) is issue 6.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
DUR=${SG_BENCH_DURATION:-600}
D=$(mktemp -d /tmp/sg-bench-XXXXXX)
pids=""
cleanup() {
        for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
        for p in $pids; do wait "$p" 2>/dev/null || true; done
        rm -rf "$D"
}
trap cleanup EXIT INT TERM
start() {
        name=$1
        shift
        "$@" >>"$D/$name.log" 2>&1 &
        pids="$! $pids"
}
now_ms() { date +%s%3N; }

start redis redis-server --port 0 --unixsocket "$D/redis.sock" --save "" \
        --appendonly no --dir "$D"
start broker "$BIN/sg-broker" --bootstrap-file "$D/bootstrap"
i=0
until [ -s "$D/bootstrap" ] && redis-cli -s "$D/redis.sock" ping >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "bench: infra did not start" >&2; exit 1; }
        sleep 0.05
done
export SG_BROKERS="$(head -n 1 "$D/bootstrap")" SG_REDIS="unix://$D/redis.sock"
export SG_GROUP_PREFIX=bench SG_CONFIG=config/spendguard.yaml
# No metrics ports: a `make run` on the same machine may hold them.
export SG_METRICS_LISTEN=off

# --- ingest alone, Avro then JSON: its own broker, a preloaded scenario,
# timed until its /metrics count every record as accepted.
metric_sum() { # port, series prefix
        python3 - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=2).read().decode()
except Exception:
    print(0); sys.exit()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(sys.argv[2]))))
PY
}
ingest_eps() { # --json or ""
        dir=$(mktemp -d "$D/ingest-XXXX")
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        # 16 partitions: the mock keeps only ~5 MiB per partition.
        "$BIN/sg-broker" --partitions 16 --bootstrap-file "$dir/bootstrap" \
                >"$dir/broker.log" 2>&1 &
        bpid=$!
        pids="$bpid $pids"
        until [ -s "$dir/bootstrap" ]; do sleep 0.05; done
        SG_BROKERS="$(head -n 1 "$dir/bootstrap")" "$BIN/sg-gen" --seed 5 \
                --duration "$DUR" $1 --truth "$dir/truth" 2>>"$dir/gen.log"
        n=$(sed -n 's/.*"sent":\([0-9]*\).*/\1/p' "$dir/truth")
        s0=$(now_ms)
        SG_BROKERS="$(head -n 1 "$dir/bootstrap")" SG_GROUP_PREFIX=bench-in \
                SG_METRICS_LISTEN="127.0.0.1:$port" "$BIN/sg-ingest" \
                >"$dir/ingest.log" 2>&1 &
        ipid=$!
        pids="$ipid $pids"
        # The clock starts at the first record counted, after the group join.
        until c0=$(metric_sum "$port" 'spendguard_events_total{stage="ingest"') && [ "$c0" -gt 0 ]; do
                [ $(( $(now_ms) - s0 )) -lt 60000 ] || { echo "bench: ingest did not start" >&2; exit 1; }
                sleep 0.02
        done
        s0=$(now_ms)
        until [ "$(metric_sum "$port" 'spendguard_events_total{stage="ingest"')" -ge "$n" ]; do
                [ $(( $(now_ms) - s0 )) -lt 300000 ] || { echo "bench: ingest did not finish" >&2; exit 1; }
                sleep 0.02
        done
        s1=$(now_ms)
        kill -TERM "$ipid" "$bpid"
        wait "$ipid" "$bpid" 2>/dev/null || true
        echo $(( (n - c0) * 1000 / (s1 - s0 + 1) ))
}
ingest_avro=$(ingest_eps "")
ingest_json=$(ingest_eps --json)

t0=$(now_ms)
"$BIN/sg-gen" --seed 3 --duration "$DUR" --truth "$D/truth.jsonl" 2>>"$D/gen.log"
t1=$(now_ms)
events=$(python3 -c "import json,sys
n=0
for l in open(sys.argv[1]):
    o=json.loads(l)
    if o.get('channel') and o.get('campaign_id') is None:
        n+=o['impressions']+o['clicks']+o['conversions']
print(n)" "$D/truth.jsonl")

t2=$(now_ms)
for s in ingest aggregate rules sink; do
        start "$s" "$BIN/sg-$s"
        [ "$s" = aggregate ] && agg_pid=${pids%% *}
done
until "$BIN/sg-ctl" kpis --json >"$D/kpis.jsonl" 2>>"$D/ctl.log" &&
        python3 -c "import json,sys
want={(o['channel'],o.get('campaign_id')):o for o in map(json.loads,open(sys.argv[1])) if 'channel' in o}
got={(o['channel'],o.get('campaign_id')):o for o in map(json.loads,open(sys.argv[2]))}
f=['impressions','clicks','conversions','spend_micros','revenue_micros','invalid_clicks']
sys.exit(0 if all(k in got and all(got[k][x]==v[x] for x in f) for k,v in want.items()) else 1)" \
                "$D/truth.jsonl" "$D/kpis.jsonl"; do
        [ $(( $(now_ms) - t2 )) -lt 300000 ] || { echo "bench: pipeline did not finish in 300 s" >&2; exit 1; }
        sleep 0.1
done
t3=$(now_ms)
# aggregate prints its Redis command count when it stops.
kill -TERM "$agg_pid"
wait "$agg_pid" 2>/dev/null || true
cmds=$(sed -n 's/.*event=stop redis_commands=\([0-9]*\).*/\1/p' "$D/aggregate.log")
gen_s=$(echo "scale=3; ($t1 - $t0) / 1000" | bc)
e2e_s=$(echo "scale=3; ($t3 - $t2) / 1000" | bc)
printf '%-28s %12s\n' "events" "$events" "sg-gen produce (s)" "$gen_s" \
        "pipeline to exact KPIs (s)" "$e2e_s" \
        "aggregate Redis commands" "$cmds" \
        "ingest alone, Avro (ev/s)" "$ingest_avro" \
        "ingest alone, JSON (ev/s)" "$ingest_json"
echo "bench: events=$events gen_eps=$(echo "$events * 1000 / ($t1 - $t0)" | bc) e2e_eps=$(echo "$events * 1000 / ($t3 - $t2)" | bc) aggregate_redis_cmds_per_1k_events=$(echo "scale=2; $cmds * 1000 / $events" | bc) ingest_avro_eps=$ingest_avro ingest_json_eps=$ingest_json"
