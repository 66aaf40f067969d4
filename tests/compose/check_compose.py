#!/usr/bin/env python3
"""Checks that docker-compose.yml agrees with the stages' defaults.

The reference is docs/config.md (generated from the config table in
lib/conf.c; its own test fails when it drifts): the topics.* defaults and the
per-stage metrics ports in the description of metrics.listen. The compose
file is read through `docker-compose config` (so it must also be valid for
Compose), then checked against that reference together with
deploy/prometheus.yml, the Grafana provisioning, config/docker.yaml and the
Dockerfile. See docs/docker.md.

Usage: check_compose.py [--source-dir DIR]
Exit: 0 all checks pass, 1 a mismatch (every one is named on stderr),
77 skipped (docker-compose or python3-yaml is not installed).
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

SKIP = 77
STAGES = ("ingest", "aggregate", "rules", "sink")
PROG = "check_compose"


class Checker:
    def __init__(self):
        self.errors = []
        self.passed = 0

    def check(self, cond, msg):
        if cond:
            self.passed += 1
        else:
            self.errors.append(msg)
        return cond


def die(msg, code=1):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------ the reference
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|\s*`([^`]*)`\s*\|"
                 r"[^|]*\|([^|]*)\|\s*(.*?)\s*\|\s*$")


def parse_config_md(path):
    """{key: (default, env, description)} from the table of docs/config.md."""
    fields = {}
    for line in read(path).splitlines():
        m = ROW.match(line)
        if m:
            fields[m.group(1)] = (m.group(3), m.group(4).strip(), m.group(5))
    if not fields:
        die(f"FAIL: no config table found in {path}")
    return fields


def stage_ports(fields, path):
    """{stage: port} from metrics.listen's description, e.g.
    "(port by stage: ingest 9731, aggregate 9732, rules 9733, sink 9734)"."""
    if "metrics.listen" not in fields:
        die(f"FAIL: {path} has no metrics.listen key")
    desc = fields["metrics.listen"][2]
    m = re.search(r"port by stage:([^)]*)\)", desc)
    ports = {}
    if m:
        for stage, port in re.findall(r"([a-z]+)\s+(\d+)", m.group(1)):
            ports[stage] = int(port)
    if set(ports) != set(STAGES):
        die(f"FAIL: {path}: metrics.listen's description should list the "
            f"port of each stage {STAGES}, found {ports or desc!r}")
    return ports


# ------------------------------------------------------------------ helpers
def as_argv(cmd):
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(a) for a in cmd]


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def depends_of(svc):
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return {d: "service_started" for d in dep}
    return {k: (v or {}).get("condition", "service_started")
            for k, v in dep.items()}


def split_hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port) if port.isdigit() else None


def flatten(node, prefix=""):
    """Dotted keys of a YAML mapping's scalar leaves; kafka: and channels:
    are returned as themselves (free-form map, list of channels)."""
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        if not prefix and k in ("kafka", "channels"):
            out[key] = v
        elif isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ------------------------------------------------------------------- checks
def check_stages(c, services, ports, kafka_addr, redis_addr):
    for stage in STAGES:
        port = ports[stage]
        where = f"docker-compose.yml: service {stage}"
        svc = services.get(stage)
        if not c.check(svc is not None, f"{where} is missing"):
            continue
        argv = as_argv(svc.get("command"))
        c.check(argv[:1] == [f"sg-{stage}"],
                f"{where}: command is {argv}, expected [sg-{stage}, ...]")
        c.check("build" in svc, f"{where}: no `build:` (the image is built "
                "from the Dockerfile)")
        env = env_of(svc)
        listen = env.get("SG_METRICS_LISTEN")
        c.check(listen == f"0.0.0.0:{port}",
                f"{where}: SG_METRICS_LISTEN is {listen!r}, expected "
                f"'0.0.0.0:{port}' (the {stage} port in docs/config.md "
                "metrics.listen, on all interfaces for Prometheus)")
        c.check(env.get("SG_BROKERS") == kafka_addr,
                f"{where}: SG_BROKERS is {env.get('SG_BROKERS')!r}, expected "
                f"{kafka_addr!r} (the kafka service's advertised listener)")
        c.check(env.get("SG_REDIS") == redis_addr,
                f"{where}: SG_REDIS is {env.get('SG_REDIS')!r}, expected "
                f"{redis_addr!r} (the redis service)")
        published = svc.get("ports") or []
        ok = len(published) == 1 and isinstance(published[0], dict) and \
            int(published[0].get("target", -1)) == port and \
            str(published[0].get("published")) == str(port) and \
            published[0].get("host_ip") == "127.0.0.1"
        if not ok and len(published) == 1 and isinstance(published[0], str):
            ok = re.fullmatch(rf"127\.0\.0\.1:{port}:{port}(/tcp)?",
                              published[0]) is not None
        c.check(ok, f"{where}: ports are {published}, expected exactly "
                f"127.0.0.1:{port}:{port}")
        dep = depends_of(svc)
        c.check(dep.get("kafka-init") == "service_completed_successfully",
                f"{where}: should depend on kafka-init with condition "
                f"service_completed_successfully, has {dep}")
        c.check(dep.get("redis") == "service_healthy",
                f"{where}: should depend on redis with condition "
                f"service_healthy, has {dep}")
        c.check(svc.get("restart") == "on-failure",
                f"{where}: restart is {svc.get('restart')!r}, expected "
                "'on-failure'")
        hc = " ".join(as_argv((svc.get("healthcheck") or {}).get("test")))
        if hc:
            c.check(f"/{port}" in hc and "/healthz" in hc,
                    f"{where}: healthcheck {hc!r} does not GET /healthz on "
                    f"port {port}")


def check_kafka(c, services, src):
    """Returns the bootstrap address the stages must use ('kafka:9092')."""
    svc = services.get("kafka")
    if not c.check(svc is not None, "docker-compose.yml: service kafka is "
                   "missing"):
        return None
    env = env_of(svc)
    where = "docker-compose.yml: service kafka"
    roles = set((env.get("KAFKA_PROCESS_ROLES") or "").split(","))
    c.check(roles == {"broker", "controller"},
            f"{where}: KAFKA_PROCESS_ROLES should be broker,controller "
            "(KRaft, single node)")
    c.check((env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") or "").lower()
            == "false", f"{where}: KAFKA_AUTO_CREATE_TOPICS_ENABLE should "
            "be false (kafka-init creates the topics)")
    c.check(env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") == "1",
            f"{where}: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR should be 1 "
            "on a single node")
    c.check(bool(svc.get("healthcheck")), f"{where}: no healthcheck")
    # The broker the tests run (tools/kafka.sh) is the one compose runs.
    pom = os.path.join(src, "tools", "kafka", "pom.xml")
    pm = re.search(r"<kafka.version>([^<]+)</kafka.version>",
                   open(pom, encoding="utf-8").read())
    want = f"apache/kafka:{pm.group(1) if pm else '?'}"
    for name in ("kafka", "kafka-init"):
        img = (services.get(name) or {}).get("image")
        c.check(img == want, f"docker-compose.yml: service {name}: image "
                f"{img!r}, but tools/kafka/pom.xml pins {want!r}")
    adv = env.get("KAFKA_ADVERTISED_LISTENERS") or ""
    m = re.search(r"PLAINTEXT://([^,]+)", adv)
    if not c.check(m is not None, f"{where}: KAFKA_ADVERTISED_LISTENERS "
                   f"{adv!r} has no PLAINTEXT listener"):
        return None
    host, port = split_hostport(m.group(1))
    listeners = env.get("KAFKA_LISTENERS") or ""
    lm = re.search(r"PLAINTEXT://([^,]*)", listeners)
    c.check(lm is not None and split_hostport(lm.group(1))[1] == port,
            f"{where}: KAFKA_LISTENERS {listeners!r} has no PLAINTEXT "
            f"listener on the advertised port {port}")
    c.check(host == "kafka", f"{where}: the advertised PLAINTEXT listener "
            f"is {m.group(1)!r}; clients in compose reach the broker as "
            "'kafka'")
    return m.group(1)


def check_registry(c, services, src, fields, kafka_addr):
    """The schema registry: the version tools/registry.sh runs, stored in
    the compose broker, and ingest and sink pointed at it (their env var
    as docs/config.md names it); sg-gen in JSON, whose Avro would carry
    contract ids the registry does not hold."""
    where = "docker-compose.yml: service schema-registry"
    svc = services.get("schema-registry")
    if not c.check(svc is not None, f"{where} is missing"):
        return
    pom = os.path.join(src, "tools", "registry", "pom.xml")
    pm = re.search(r"<apicurio.version>([^<]+)</apicurio.version>",
                   open(pom, encoding="utf-8").read())
    want = ("apicurio/apicurio-registry-kafkasql:"
            f"{pm.group(1) if pm else '?'}")
    c.check(svc.get("image") == want, f"{where}: image {svc.get('image')!r},"
            f" but tools/registry/pom.xml pins {want!r}")
    env = env_of(svc)
    c.check(env.get("KAFKA_BOOTSTRAP_SERVERS") == kafka_addr,
            f"{where}: KAFKA_BOOTSTRAP_SERVERS is "
            f"{env.get('KAFKA_BOOTSTRAP_SERVERS')!r}, expected {kafka_addr!r}")
    c.check(bool(svc.get("healthcheck")), f"{where}: no healthcheck")
    port = env.get("QUARKUS_HTTP_PORT") or "8080"
    url = f"http://schema-registry:{port}/apis/ccompat/v6"
    var = (fields.get("schema_registry.url") or ("", "", ""))[1].strip()
    c.check(var == "SG_SCHEMA_REGISTRY_URL", "docs/config.md: "
            f"schema_registry.url's environment variable is {var!r}")
    for name in ("ingest", "sink"):
        stage = services.get(name) or {}
        got = env_of(stage).get(var)
        c.check(got == url, f"docker-compose.yml: service {name}: {var} is "
                f"{got!r}, expected {url!r}")
        c.check(depends_of(stage).get("schema-registry") == "service_healthy",
                f"docker-compose.yml: service {name} should depend on "
                "schema-registry being healthy")
    gen = services.get("gen") or {}
    c.check("--json" in as_argv(gen.get("command")),
            "docker-compose.yml: service gen should send --json")


def check_redis(c, services):
    svc = services.get("redis")
    if not c.check(svc is not None, "docker-compose.yml: service redis is "
                   "missing"):
        return None
    hc = " ".join(as_argv((svc.get("healthcheck") or {}).get("test")))
    c.check("redis-cli" in hc and "ping" in hc,
            "docker-compose.yml: service redis: healthcheck should run "
            f"redis-cli ping, is {hc!r}")
    port = 6379
    argv = as_argv(svc.get("command"))
    if "--port" in argv[:-1]:
        port = int(argv[argv.index("--port") + 1])
    return f"redis://redis:{port}/0"


def check_topics(c, services, topics, kafka_addr):
    """kafka-init creates exactly the topics.* defaults."""
    where = "docker-compose.yml: service kafka-init"
    svc = services.get("kafka-init")
    if not c.check(svc is not None, f"{where} is missing"):
        return
    env = env_of(svc)
    specs = (env.get("SG_TOPICS") or "").split()
    names = []
    for spec in specs:
        name, _, parts = spec.partition(":")
        names.append(name)
        c.check(parts.isdigit() and int(parts) >= 1,
                f"{where}: SG_TOPICS entry {spec!r} should be "
                "NAME:PARTITIONS with PARTITIONS >= 1")
    dups = sorted({n for n in names if names.count(n) > 1})
    c.check(not dups, f"{where}: SG_TOPICS lists {dups} more than once")
    want = set(topics.values())
    missing = sorted(want - set(names))
    extra = sorted(set(names) - want)
    by_topic = {v: k for k, v in topics.items()}
    c.check(not missing, f"{where}: SG_TOPICS does not create "
            + ", ".join(f"{t} ({by_topic[t]})" for t in missing)
            + " — topic names must equal the topics.* defaults in "
            "docs/config.md")
    c.check(not extra, f"{where}: SG_TOPICS creates {extra}, which are no "
            "topics.* default in docs/config.md")
    script = " ".join(as_argv(svc.get("entrypoint")) +
                      as_argv(svc.get("command")))
    c.check("kafka-topics.sh" in script and "--create" in script and
            "SG_TOPICS" in script and "SG_BOOTSTRAP" in script,
            f"{where}: the command should run kafka-topics.sh --create for "
            "each entry of $SG_TOPICS against $SG_BOOTSTRAP")
    c.check(env.get("SG_BOOTSTRAP") == kafka_addr,
            f"{where}: SG_BOOTSTRAP is {env.get('SG_BOOTSTRAP')!r}, expected "
            f"{kafka_addr!r}")
    dep = depends_of(svc)
    c.check(dep.get("kafka") == "service_healthy",
            f"{where}: should depend on kafka with condition service_healthy")
    c.check(svc.get("restart") in (None, "no"),
            f"{where}: a one-shot service must not restart")


def check_gen(c, services, kafka_addr):
    where = "docker-compose.yml: service gen"
    svc = services.get("gen")
    if not c.check(svc is not None, f"{where} is missing"):
        return
    argv = as_argv(svc.get("command"))
    c.check(argv[:1] == ["sg-gen"] and "--realtime" in argv,
            f"{where}: command is {argv}, expected sg-gen --realtime ...")
    c.check("demo" in (svc.get("profiles") or []),
            f"{where}: should be in profile 'demo'")
    env = env_of(svc)
    c.check(env.get("SG_BROKERS") == kafka_addr,
            f"{where}: SG_BROKERS is {env.get('SG_BROKERS')!r}, expected "
            f"{kafka_addr!r}")


def check_prometheus(c, src, services, ports):
    where = "docker-compose.yml: service prometheus"
    svc = services.get("prometheus")
    if not c.check(svc is not None, f"{where} is missing"):
        return
    mounts = [v for v in (svc.get("volumes") or []) if isinstance(v, str)]
    mounts += [f"{v.get('source')}:{v.get('target')}"
               for v in (svc.get("volumes") or []) if isinstance(v, dict)]
    want_src = os.path.join(src, "deploy", "prometheus.yml")
    c.check(any(m.split(":")[0] == want_src and
                m.split(":")[1] == "/etc/prometheus/prometheus.yml"
                for m in mounts),
            f"{where}: should mount deploy/prometheus.yml at "
            f"/etc/prometheus/prometheus.yml, mounts {mounts}")
    import yaml
    path = os.path.join(src, "deploy", "prometheus.yml")
    try:
        prom = yaml.safe_load(read(path)) or {}
    except (OSError, yaml.YAMLError) as e:
        c.check(False, f"deploy/prometheus.yml: {e}")
        return
    targets = []
    for job in prom.get("scrape_configs") or []:
        c.check(job.get("metrics_path", "/metrics") == "/metrics",
                f"deploy/prometheus.yml: job {job.get('job_name')} scrapes "
                f"{job.get('metrics_path')}, expected /metrics")
        for sc in job.get("static_configs") or []:
            targets += sc.get("targets") or []
    want = {f"{s}:{ports[s]}" for s in STAGES}
    dups = sorted({t for t in targets if targets.count(t) > 1})
    c.check(not dups, f"deploy/prometheus.yml: targets {dups} are scraped "
            "more than once")
    missing, extra = sorted(want - set(targets)), sorted(set(targets) - want)
    c.check(not missing and not extra,
            "deploy/prometheus.yml: scrape targets should be exactly "
            f"{sorted(want)} (stage service:metrics port); missing "
            f"{missing}, unexpected {extra}")


def check_grafana(c, src, services):
    import yaml
    where = "docker-compose.yml: service grafana"
    svc = services.get("grafana")
    if not c.check(svc is not None, f"{where} is missing"):
        return
    ds_dir = os.path.join(src, "deploy", "grafana", "provisioning",
                          "datasources")
    urls = []
    for name in sorted(os.listdir(ds_dir)) if os.path.isdir(ds_dir) else []:
        doc = yaml.safe_load(read(os.path.join(ds_dir, name))) or {}
        urls += [d.get("url") for d in doc.get("datasources") or []]
    c.check("http://prometheus:9090" in urls,
            "deploy/grafana/provisioning/datasources: no datasource with url "
            f"http://prometheus:9090, found {urls}")


def check_dashboard(c, src):
    """Every spendguard_* series the dashboard queries is named in
    docs/docker.md (exported by the stages, or listed there as expected)."""
    dash_dir = os.path.join(src, "deploy", "grafana", "dashboards")
    try:
        doc = read(os.path.join(src, "docs", "docker.md"))
    except OSError as e:
        c.check(False, f"docs/docker.md: {e.strerror}")
        return
    documented = set(re.findall(r"spendguard_[a-z_]+", doc))
    files = [f for f in sorted(os.listdir(dash_dir)) if f.endswith(".json")] \
        if os.path.isdir(dash_dir) else []
    c.check(bool(files), "deploy/grafana/dashboards: no dashboard JSON")
    for name in files:
        try:
            dash = json.loads(read(os.path.join(dash_dir, name)))
        except ValueError as e:
            c.check(False, f"deploy/grafana/dashboards/{name}: {e}")
            continue
        used = set()
        for m in re.findall(r"spendguard_[a-z_]+", json.dumps(dash)):
            used.add(re.sub(r"_(bucket|count|sum)$", "", m))
        undocumented = sorted(used - documented)
        c.check(not undocumented, f"deploy/grafana/dashboards/{name} "
                f"queries {undocumented}, which docs/docker.md does not name")


def check_docker_yaml(c, src, fields, topics):
    import yaml
    path = os.path.join(src, "config", "docker.yaml")
    if not os.path.exists(path):
        return
    try:
        doc = yaml.safe_load(read(path)) or {}
    except yaml.YAMLError as e:
        c.check(False, f"config/docker.yaml: {e}")
        return
    for key, val in flatten(doc).items():
        if key == "kafka":
            c.check(isinstance(val, dict), "config/docker.yaml: kafka: "
                    "should be a map of librdkafka properties")
        elif key == "channels":
            ok = isinstance(val, list)
            for ch in val if ok else []:
                bad = sorted(set(ch) - {"name", "budget_micros",
                                        "target_cpa_micros"})
                c.check(not bad, f"config/docker.yaml: channel "
                        f"{ch.get('name')!r} has unknown keys {bad}")
            c.check(ok, "config/docker.yaml: channels: should be a list")
        else:
            c.check(key in fields, f"config/docker.yaml: key {key!r} is not "
                    "in docs/config.md")
    flat = flatten(doc)
    for tkey, default in topics.items():
        if tkey in flat:
            c.check(flat[tkey] == default, f"config/docker.yaml: {tkey} is "
                    f"{flat[tkey]!r}, not the default {default!r} of "
                    "docs/config.md that kafka-init creates")
    listen = str(flat.get("metrics.listen", ""))
    c.check(listen in ("", "0.0.0.0"), "config/docker.yaml: metrics.listen "
            f"is {listen!r}; in compose it should be the host 0.0.0.0 (each "
            "stage on its default port)")
    dockerfile = read(os.path.join(src, "Dockerfile"))
    c.check(re.search(r"COPY\s+config/docker\.yaml\b[^\n]*\s/etc/spendguard/",
                      dockerfile) is not None and
            "SG_CONFIG=/etc/spendguard/docker.yaml" in dockerfile,
            "Dockerfile: should COPY config/docker.yaml to /etc/spendguard/ "
            "and set SG_CONFIG=/etc/spendguard/docker.yaml")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")),
        help="repository root (default: two levels above this script)")
    args = ap.parse_args()
    src = os.path.abspath(args.source_dir)

    compose = shutil.which("docker-compose")
    if not compose:
        die("SKIP: docker-compose is not installed (Debian package "
            "docker-compose)", SKIP)
    try:
        import yaml
    except ImportError:
        die("SKIP: python3-yaml is not installed", SKIP)

    compose_file = os.path.join(src, "docker-compose.yml")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COMPOSE_")}
    p = subprocess.run([compose, "--profile", "demo", "-f", compose_file,
                        "config"], cwd=src, env=env, capture_output=True,
                       text=True)
    if p.returncode != 0:
        die(f"FAIL: docker-compose config rejects {compose_file}:\n"
            f"{p.stderr.strip()}")
    services = (yaml.safe_load(p.stdout) or {}).get("services") or {}

    config_md = os.path.join(src, "docs", "config.md")
    fields = parse_config_md(config_md)
    topics = {k: v[0] for k, v in fields.items() if k.startswith("topics.")}
    if not topics:
        die(f"FAIL: {config_md} has no topics.* keys")
    ports = stage_ports(fields, config_md)

    c = Checker()
    kafka_addr = check_kafka(c, services, src)
    redis_addr = check_redis(c, services)
    check_stages(c, services, ports, kafka_addr, redis_addr)
    check_topics(c, services, topics, kafka_addr)
    check_gen(c, services, kafka_addr)
    check_registry(c, services, src, fields, kafka_addr)
    check_prometheus(c, src, services, ports)
    check_grafana(c, src, services)
    check_dashboard(c, src)
    check_docker_yaml(c, src, fields, topics)

    for e in c.errors:
        print(f"{PROG}: FAIL: {e}", file=sys.stderr)
    if c.errors:
        print(f"{PROG}: {len(c.errors)} mismatch(es), {c.passed} checks "
              "passed", file=sys.stderr)
        return 1
    print(f"{PROG}: ok: {c.passed} checks; stages "
          + ", ".join(f"{s}:{ports[s]}" for s in STAGES)
          + f"; {len(topics)} topics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
