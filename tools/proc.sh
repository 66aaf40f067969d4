# Sourced by tools/kafka.sh and tools/registry.sh: a background JVM's
# readiness wait and its stop, by the pid in a file. Needs a die()
# function.

# wait_ready PIDFILE WAIT_S LOG CMD...: runs CMD every 0.2 s until it
# succeeds. Dies if the process exits, or after WAIT_S s (stopping it
# first).
wait_ready() {
        wr_pidfile=$1 wr_wait=$2 wr_log=$3
        shift 3
        wr_deadline=$(($(date +%s) + wr_wait))
        until "$@"; do
                if ! kill -0 "$(cat "$wr_pidfile")" 2>/dev/null; then
                        die "it exited; see $wr_log"
                fi
                if [ "$(date +%s)" -ge "$wr_deadline" ]; then
                        stop_pidfile "$wr_pidfile"
                        die "not ready in $wr_wait s; see $wr_log"
                fi
                sleep 0.2
        done
}

# stop_pidfile PIDFILE: SIGTERM, SIGKILL after 30 s (a controlled shutdown
# that hangs), then removes PIDFILE.
stop_pidfile() {
        sp_pid=$(cat "$1")
        if kill -TERM "$sp_pid" 2>/dev/null; then
                sp_i=0
                while kill -0 "$sp_pid" 2>/dev/null; do
                        sp_i=$((sp_i + 1))
                        if [ $sp_i -gt 300 ]; then
                                kill -KILL "$sp_pid" 2>/dev/null || true
                                break
                        fi
                        sleep 0.1
                done
        fi
        rm -f "$1"
}
