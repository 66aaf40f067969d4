#!/bin/sh
# `make run`: the local stack — sg-broker (SG_KAFKA=real: Apache Kafka,
# tools/kafka.sh), a private redis-server, the four
# stages, the status page (sg-ctl serve) and the sg-gen scenario in real
# time — with a live per-channel view (sg-ctl top) and every decision as it
# happens. It starts the scenario only once every stage answers /readyz, and
# stops with the failing process's own error line as soon as one dies.
# Stops everything on Ctrl-C and when the scenario ends. Logs: run/*.log,
# pids: run/*.pid.
#
# Environment: SG_RUN_DURATION (scenario length, s; default 150), SG_CONFIG,
# SG_METRICS_LISTEN (off: no readiness check), BIN, RUN_DIR.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
RUN=${RUN_DIR:-run}
case $RUN in /*) ;; *) RUN=$PWD/$RUN ;; esac
DURATION=${SG_RUN_DURATION:-150}
READY_S=${SG_RUN_READY_S:-60}
mkdir -p "$RUN"
rm -f "$RUN"/*.log "$RUN"/*.pid "$RUN"/bootstrap "$RUN"/redis.sock "$RUN"/broker.ctl

# Every process runs in a session of its own (setsid), so that Ctrl-C
# reaches only this script, which then stops each process once, by pid:
# a second signal would make a stage exit without its clean stop.
names=""
infra=""
cleanup() {
        trap - EXIT INT TERM HUP
        set +e
        for n in $names; do
                eval "p=\${pid_$n:-}"
                [ -n "$p" ] && kill -TERM "$p" 2>/dev/null
        done
        reap "$names"
        for n in $infra; do
                eval "p=\${pid_$n:-}"
                [ -n "$p" ] && kill -TERM "$p" 2>/dev/null
        done
        reap "$infra"
        if [ -f "$RUN/kafka/kafka.pid" ]; then tools/kafka.sh stop "$RUN/kafka"; fi
        [ -t 1 ] && printf '\033[?25h' # the cursor, whatever top left
        echo "run: stopped; logs in $RUN/"
}
trap cleanup EXIT
# Ctrl-C is how a run is meant to end: not an error for make.
trap 'exit 0' INT TERM HUP

# Waits up to 12 s for the processes named in $1 to exit (each stops within
# 9 s of SIGTERM, docs/operations.md), then SIGKILLs what is left.
reap() {
        i=0
        while [ $i -lt 120 ]; do
                left=""
                for n in $1; do
                        eval "p=\${pid_$n:-}"
                        [ -n "$p" ] && alive "$p" && left="$left $n"
                done
                [ -z "$left" ] && return 0
                sleep 0.1
                i=$((i + 1))
        done
        for n in $left; do
                eval "p=\${pid_$n:-}"
                echo "run: $n did not stop within 12 s; killing it" >&2
                kill -KILL "$p" 2>/dev/null || true
        done
}

# A process that has exited but is not reaped yet still answers kill -0.
alive() {
        [ -r "/proc/$1/status" ] &&
                ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

start() { # name, then the command
        name=$1
        shift
        setsid "$@" >>"$RUN/$name.log" 2>&1 &
        eval "pid_$name=$!"
        echo $! >"$RUN/$name.pid"
        names="$names $name"
}

# The process's own last word: its last error line, else its last line.
last_words() {
        line=$(grep -E 'level=error|bad config|^sg-[a-z]+: ' "$RUN/$1.log" \
                2>/dev/null | tail -n 1)
        [ -n "$line" ] || line=$(tail -n 1 "$RUN/$1.log" 2>/dev/null)
        printf '%s' "$line"
}

die_with() { # name: it died; say so with its own words
        printf '\n' >&2
        echo "run: $1 exited: $(last_words "$1")" >&2
        echo "run: its log: $RUN/$1.log" >&2
        exit 1
}

check_alive() { # names...
        for n in "$@"; do
                eval "p=\${pid_$n:-}"
                [ -n "$p" ] && ! alive "$p" && die_with "$n"
        done
        return 0
}

wait_for() { # what, name (checked alive), test command...
        what=$1
        who=$2
        shift 2
        i=0
        until "$@" 2>/dev/null; do
                check_alive "$who"
                i=$((i + 1))
                if [ $i -gt 150 ]; then
                        echo "run: $what did not start; see $RUN/$who.log" >&2
                        exit 1
                fi
                sleep 0.1
        done
}

# A free TCP port on 127.0.0.1: the given one if nothing listens there,
# else one the kernel picks (0); prints the choice.
port_for() { # default port
        if command -v ss >/dev/null 2>&1 &&
                [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; then
                echo 0
        else
                echo "$1"
        fi
}

# The port a process reports in its event=http_listen log line.
bound_port() { # name
        i=0
        while :; do
                p=$(sed -n 's/.*event=http_listen addr=[^ ]*:\([0-9]*\) .*/\1/p' \
                        "$RUN/$1.log" 2>/dev/null | tail -n 1)
                [ -n "$p" ] && { echo "$p"; return 0; }
                eval "pid=\$pid_$1"
                alive "$pid" || return 1
                i=$((i + 1))
                [ $i -gt 150 ] && return 1
                sleep 0.1
        done
}

infra="redis broker"
start redis redis-server --port 0 --unixsocket "$RUN/redis.sock" \
        --save "" --appendonly no --dir "$RUN"
if [ "${SG_KAFKA:-mock}" = real ]; then
        # SG_KAFKA=real: Apache Kafka (tools/kafka.sh, docs/broker.md) with
        # the spendguard topics, instead of sg-broker.
        infra="redis"
        rm -rf "$RUN/kafka"
        tools/kafka.sh start "$RUN/kafka" >"$RUN/bootstrap.tmp" ||
                { echo "run: Kafka did not start (log: $RUN/kafka/)" >&2; exit 1; }
        "$BIN/sg-broker" --create-on "$(cat "$RUN/bootstrap.tmp")" \
                2>>"$RUN/broker.log"
        mv "$RUN/bootstrap.tmp" "$RUN/bootstrap"
else
        start broker "$BIN/sg-broker" --bootstrap-file "$RUN/bootstrap" \
                --control "$RUN/broker.ctl"
fi
names=""
wait_for redis-server redis sh -c "redis-cli -s '$RUN/redis.sock' ping >/dev/null"
[ "${SG_KAFKA:-mock}" = real ] ||
        wait_for sg-broker broker test -s "$RUN/bootstrap"

SG_BROKERS=$(head -n 1 "$RUN/bootstrap")
SG_REDIS="unix://$RUN/redis.sock"
SG_GROUP_PREFIX="run$$"
SG_CONFIG=${SG_CONFIG:-config/spendguard.yaml}
export SG_BROKERS SG_REDIS SG_GROUP_PREFIX SG_CONFIG
echo "run: broker $SG_BROKERS, redis $SG_REDIS, logs in $RUN/"

# The stages, each on its default metrics port (9731-9734) unless that is
# taken; then on a free one, said here.
metrics=${SG_METRICS_LISTEN:-127.0.0.1}
moved="" # default ports found taken
port=9731
stages="ingest aggregate rules sink"
for s in $stages; do
        if [ "$metrics" = off ]; then
                start "$s" env SG_METRICS_LISTEN=off "$BIN/sg-$s"
        elif [ "$metrics" = 127.0.0.1 ]; then
                p=$(port_for $port)
                [ "$p" = 0 ] && moved="$moved $port"
                start "$s" env SG_METRICS_LISTEN="127.0.0.1:$p" "$BIN/sg-$s"
        else
                start "$s" "$BIN/sg-$s"
        fi
        port=$((port + 1))
done

# Ready means /readyz answers 200: broker reachable, partitions assigned,
# Redis connected.
if [ "$metrics" = off ]; then
        echo "run: SG_METRICS_LISTEN=off: readiness not checked (no /readyz)"
        sleep 2
        check_alive $stages
else
        for s in $stages; do
                p=$(bound_port "$s") || die_with "$s"
                eval "port_$s=$p"
        done
        i=0
        waiting=$stages
        while [ -n "$waiting" ]; do
                check_alive $infra $stages
                still=""
                for s in $waiting; do
                        eval "p=\$port_$s"
                        curl -fs -o /dev/null --max-time 1 \
                                "http://127.0.0.1:$p/readyz" || still="$still $s"
                done
                waiting=$still
                [ -z "$waiting" ] && break
                i=$((i + 1))
                if [ $i -gt $((READY_S * 5)) ]; then
                        for s in $waiting; do
                                eval "p=\$port_$s"
                                echo "run: sg-$s not ready after ${READY_S} s:" \
                                        "$(curl -s --max-time 1 \
                                        "http://127.0.0.1:$p/readyz")" >&2
                        done
                        exit 1
                fi
                sleep 0.2
        done
        echo "run: every stage is ready (/readyz)"
fi

# The status page: the same live picture in a browser.
serve_at=""
p=$(port_for 9730)
[ "$p" = 0 ] && moved="$moved 9730"
start serve "$BIN/sg-ctl" serve --listen "127.0.0.1:$p"
p=$(bound_port serve) || die_with serve
serve_at="http://127.0.0.1:$p/"

start gen "$BIN/sg-gen" --realtime --duration "$DURATION" --seed 1
stack="redis broker ingest aggregate rules sink serve"

note1="status page: $serve_at"
# Literally $PWD: short enough for an 80-column view, and right from the
# repository's root, where make run runs.
if [ "$RUN" = "$PWD/run" ]; then
        redis_for_user="unix://\$PWD/run/redis.sock"
else
        redis_for_user=$SG_REDIS
fi
note2="other terminal: SG_REDIS=$redis_for_user $BIN/sg-ctl kpis"
note3=""
if [ "$metrics" = off ]; then
        note3="metrics off (SG_METRICS_LISTEN=off): readiness was not checked"
elif [ "$metrics" = 127.0.0.1 ]; then
        note3="metrics: :$port_ingest :$port_aggregate :$port_rules :$port_sink (ingest..sink)"
fi
[ -n "$moved" ] && note3="$note3; taken:$moved"
echo "run: $note1"
echo "run: $note2"
[ -n "$note3" ] && echo "run: $note3"

# The live view runs until the scenario ends (or Ctrl-C); it gets SIGTERM
# and shows the cursor again. Meanwhile every process is watched.
setsid "$BIN/sg-ctl" top --note "$note1" --note "$note2" \
        ${note3:+--note "$note3"} 2>>"$RUN/top.log" &
pid_top=$!
names="$names top"
while alive "$pid_gen"; do
        check_alive $stack top
        sleep 1
done
wait "$pid_gen" || die_with gen
sleep 3 # let the last events reach the view
check_alive $stack
kill -TERM "$pid_top" 2>/dev/null || true
wait "$pid_top" 2>/dev/null || true
echo
echo "run: scenario finished. Decisions:"
"$BIN/sg-ctl" decisions --last 20 || true
