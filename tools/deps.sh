#!/bin/sh
# Installs the Debian 12 packages spendguard needs to build, test and run.
# Idempotent and silent when everything is there. Needs root (or sudo) only
# when something is missing.
set -eu

PKGS="build-essential cmake pkg-config librdkafka-dev libavro-dev \
libhiredis-dev libcriterion-dev libyaml-dev libjansson-dev \
libmicrohttpd-dev libcurl4-openssl-dev redis-server \
redis-tools python3 python3-avro python3-yaml python3-venv kcat bc docker-compose \
clang libclang-rt-14-dev valgrind curl openssl tmux chromium openjdk-17-jdk-headless maven"

missing=""
for p in $PKGS; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
                grep -q "install ok installed"; then
                missing="$missing $p"
        fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
        sudo=""
elif command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
else
        echo "deps: missing Debian packages:$missing" >&2
        echo "deps: run as root: apt-get install -y$missing" >&2
        exit 1
fi
echo "deps: installing$missing"
# .ci/run has updated the package lists already; elsewhere do it once here.
if [ "${SG_APT_UPDATED:-}" != 1 ]; then
        $sudo apt-get update -qq
fi
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
