# spendguard — the stage image used by docker-compose.yml (docs/docker.md).
# One image, every binary: a compose service picks its program with
# `command:` (sg-ingest, sg-aggregate, sg-rules, sg-sink, sg-gen, sg-ctl).

# ---- build: Debian 12 with the -dev packages of tools/deps.sh --------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        librdkafka-dev libavro-dev libhiredis-dev libyaml-dev \
        libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No test suite in the image (it needs Criterion, redis-server, sg-broker).
RUN cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSG_TESTS=OFF \
 && cmake --build /tmp/build -j"$(nproc)" \
 && cmake --install /tmp/build --prefix /opt/spendguard

# ---- runtime: only the shared libraries the binaries link -----------------
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librdkafka1 libavro23 libhiredis0.14 libyaml-0-2 libjansson4 \
        libmicrohttpd12 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/spendguard \
        --create-home --shell /usr/sbin/nologin spendguard
# Whatever `cmake --install` lays out (bin/, share/spendguard/...).
COPY --from=build /opt/spendguard /opt/spendguard
# The compose config, its rules file and the schemas, copied from the build
# context so that the image does not depend on the install layout. Relative
# paths in docker.yaml resolve against /etc/spendguard.
COPY config/docker.yaml config/rules.yaml /etc/spendguard/
COPY schemas/ /etc/spendguard/schemas/
ENV PATH=/opt/spendguard/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SG_CONFIG=/etc/spendguard/docker.yaml
USER spendguard:spendguard
WORKDIR /var/lib/spendguard
# Metrics ports of the four stages (SG_METRICS_LISTEN / metrics.listen).
EXPOSE 9731 9732 9733 9734
# No ENTRYPOINT: each compose service names its program in `command:`.
CMD ["sg-ingest", "--help"]
