#!/bin/sh
# A real schema registry speaking the Confluent Schema Registry API, for the
# tests and docker-compose.yml: Apicurio Registry (Apache-2.0), its
# Confluent-compatible API under /apis/ccompat/v6, in-memory storage, on a
# free loopback port. Built from Maven Central through
# tools/registry/pom.xml (pinned) once and cached, like tools/kafka.sh.
# See docs/schemas.md.
#
#   tools/registry.sh fetch        build the runnable jar into the cache,
#                                  print its folder
#   tools/registry.sh run DIR      write DIR/url (the Confluent API's base
#                                  URL; with TLS also DIR/tls_url) and exec
#                                  the registry in the foreground: the
#                                  caller owns its pid
#   tools/registry.sh start [DIR]  run in the background (pid in
#                                  DIR/registry.pid, log in
#                                  DIR/registry.log; DIR a new temp dir if
#                                  none), wait until it answers, print the
#                                  URL
#   tools/registry.sh stop DIR     stop the registry of DIR by its pid
#
# Environment: SG_KAFKA_CACHE (default ~/.cache/spendguard, shared with
# kafka.sh), SG_REGISTRY_HEAP (default 256m), SG_REGISTRY_PORT (run: the
# port; default a free one), SG_REGISTRY_HOST (default 127.0.0.1),
# SG_REGISTRY_WAIT_S (start's deadline, default 120), JAVA (default java),
# SG_REGISTRY_TLS_CERT and SG_REGISTRY_TLS_KEY (PEM files: run also serves
# https on another free port).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
pom="$here/registry/pom.xml"
settings="$here/registry/settings.xml"
version=$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$pom")
# The pom and settings decide what is built: a changed one is a new cache.
key=$(cat "$pom" "$settings" | sha256sum | cut -c1-12)
cache="${SG_KAFKA_CACHE:-${HOME:-/tmp}/.cache/spendguard}/apicurio-registry-$version-$key"
jar="$cache/build/target/sg-schema-registry-1-runner.jar"

die() {
        echo "registry.sh: $*" >&2
        exit 1
}
. "$here/proc.sh"

# `mvn package` of the pom in a copy inside the cache, once. A stamp file
# marks a complete build; a lock keeps two test binaries from building at
# the same time.
fetch() {
        [ -f "$cache/complete" ] && return 0
        mkdir -p "$cache"
        (
                flock 9
                [ -f "$cache/complete" ] && exit 0
                rm -rf "$cache/build"
                mkdir -p "$cache/build"
                cp "$pom" "$settings" "$cache/build/"
                echo "registry.sh: building Apicurio Registry $version (Maven Central) into $cache" >&2
                mvn -q -B -s "$cache/build/settings.xml" -f "$cache/build/pom.xml" \
                        package -DskipTests >&2 ||
                        die "mvn could not build the registry"
                [ -f "$jar" ] || die "mvn built no $jar"
                touch "$cache/complete"
        ) 9>"$cache/.lock"
}

free_port() {
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# 0 once the Confluent API of the registry in DIR $1 answers.
answers() {
        [ -f "$1/url" ] && curl -sf -o /dev/null --max-time 2 "$(cat "$1/url")/subjects"
}

cmd=${1:-}
dir=${2:-}
case "$cmd" in
fetch)
        fetch
        echo "$cache"
        ;;
run)
        [ -n "$dir" ] || die "usage: registry.sh run DIR"
        fetch
        mkdir -p "$dir"
        host=${SG_REGISTRY_HOST:-127.0.0.1}
        port=${SG_REGISTRY_PORT:-$(free_port)}
        # Written aside, then renamed: a caller waiting for it never reads
        # it half written.
        set --
        if [ -n "${SG_REGISTRY_TLS_CERT:-}" ]; then
                tport=$(free_port)
                while [ "$tport" = "$port" ]; do tport=$(free_port); done
                set -- -Dquarkus.http.ssl-port="$tport" \
                        -Dquarkus.http.ssl.certificate.file="$SG_REGISTRY_TLS_CERT" \
                        -Dquarkus.http.ssl.certificate.key-file="${SG_REGISTRY_TLS_KEY:?with SG_REGISTRY_TLS_CERT}"
                echo "https://$host:$tport/apis/ccompat/v6" >"$dir/tls_url.tmp"
                mv "$dir/tls_url.tmp" "$dir/tls_url"
        fi
        echo "http://$host:$port/apis/ccompat/v6" >"$dir/url.tmp"
        mv "$dir/url.tmp" "$dir/url"
        # exec: the caller's pid is the JVM's, so it can stop it. Serial
        # GC and a small heap: one registry, short runs, two shared cores.
        exec "${JAVA:-java}" -Xms"${SG_REGISTRY_HEAP:-256m}" \
                -Xmx"${SG_REGISTRY_HEAP:-256m}" -XX:+UseSerialGC \
                -Dquarkus.http.host="$host" -Dquarkus.http.port="$port" \
                -Dquarkus.log.level=WARN "$@" \
                -jar "$jar"
        ;;
start)
        if [ -z "$dir" ]; then
                dir=$(mktemp -d /tmp/sg-registry-XXXXXX)
                echo "registry.sh: in $dir (stop: tools/registry.sh stop $dir)" >&2
        fi
        fetch
        mkdir -p "$dir"
        rm -f "$dir/url"
        "$0" run "$dir" >>"$dir/registry.log" 2>&1 &
        echo $! >"$dir/registry.pid"
        # run writes DIR/url before it execs the JVM.
        wait_ready "$dir/registry.pid" "${SG_REGISTRY_WAIT_S:-120}" \
                "$dir/registry.log" answers "$dir"
        cat "$dir/url"
        ;;
stop)
        [ -n "$dir" ] && [ -f "$dir/registry.pid" ] || die "usage: registry.sh stop DIR (with DIR/registry.pid)"
        stop_pidfile "$dir/registry.pid"
        ;;
*)
        die "usage: registry.sh fetch | run DIR | start [DIR] | stop DIR"
        ;;
esac
