#!/usr/bin/env python3
"""Turns bench/run.sh's raw measures into the table, results.json and the
last `bench:` line. Arguments: measures steps latency out.json fixed_rate
fraud_channels wall_ms fraud_period_s warmup_steps (the leading steps that
only warm the pipeline up: not reported)."""
import json
import os
import sys

measures_path, steps_path, latency_path, out_path = sys.argv[1:5]
fixed_rate = float(sys.argv[5])
fraud = int(sys.argv[6])
wall_ms = int(sys.argv[7])
fraud_period = float(sys.argv[8]) if len(sys.argv) > 8 else 0
warmup = int(sys.argv[9]) if len(sys.argv) > 9 else 0

m = {}
for line in open(measures_path):
    name, *kvs = line.split()
    m[name] = {}
    for kv in kvs:
        k, v = kv.split("=", 1)
        try:
            m[name][k] = float(v)
        except ValueError:
            m[name][k] = v

steps = []
gen = {}
for line in open(steps_path):
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    if line.startswith("step "):
        steps.append({k: float(v) for k, v in kv.items()})
    else:
        gen = {k: float(v) for k, v in kv.items()}
warmup_steps, steps = steps[:warmup], steps[warmup:]

decisions = []
for line in open(latency_path):
    f = line.split()
    if len(f) >= 6:
        decisions.append({"recv": int(f[0]), "end": int(f[2]), "action": f[3],
                          "rule": f[4], "channel": f[5]})


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


# A decision belongs to the step during which its window ended; its latency
# runs from the window end (lateness 0: the moment the first event past the
# window was due to be produced) to when it was read from ad-decisions.
sustainable = 0
headline = None
ok_so_far = True
for st in steps:
    lat = [d["recv"] - d["end"] for d in decisions
           if st["start_ms"] <= d["end"] < st["end_ms"]]
    alerts = sum(1 for d in decisions if d["action"] == "ALERT"
                 and st["start_ms"] <= d["end"] < st["end_ms"])
    # One ALERT per episode: per fraud channel, one per on-phase (the bots
    # come for fraud_period s, then stay away as long), or one per window
    # when the bots never leave.
    secs = (st["end_ms"] - st["start_ms"]) / 1000.0
    expected = fraud * secs / (2 * fraud_period) if fraud_period else \
        fraud * secs
    st.update({"decisions": len(lat), "alerts": alerts,
               "alerts_expected": int(expected),
               "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
               "max_ms": max(lat) if lat else None})
    # Sustained: the ALERTs of (nearly) every window came, within 1 s at p99.
    st["sustained"] = bool(lat) and st["p99_ms"] <= 1000 and \
        alerts >= 0.9 * expected
    if ok_so_far and st["sustained"]:
        sustainable = st["rate"]
    else:
        ok_so_far = False
    if st["rate"] == fixed_rate and headline is None:
        headline = st


# Where the latency goes at the headline step (sg-bench-latency -t): from
# the window end to aggregate's snapshot of it on sg.aggregates, to rules'
# decision on the internal topic, to the sink's copy on ad-decisions, to
# the probe reading it (Kafka timestamps: when each stage produced).
hops = {}
trace_path = os.path.join(os.path.dirname(latency_path), "trace.txt")
if headline and os.path.exists(trace_path):
    first = {"agg": {}, "dec": {}}
    for line in open(trace_path):
        f = line.split()
        if len(f) == 5 and f[0] in first:
            first[f[0]].setdefault((f[4], int(f[2])), int(f[3]))
    rows = []
    for line in open(latency_path):
        f = line.split()
        if len(f) < 7:
            continue
        k = (f[5], int(f[2]))
        if not (headline["start_ms"] <= k[1] < headline["end_ms"]) or \
                k not in first["agg"] or k not in first["dec"]:
            continue
        a, d, o = first["agg"][k], first["dec"][k], int(f[6])
        rows.append((a - k[1], d - a, o - d, int(f[0]) - o))
    for i, name in enumerate(("aggregate", "rules", "sink", "read")):
        xs = [r[i] for r in rows]
        hops[name] = {"p50_ms": pct(xs, 50), "p99_ms": pct(xs, 99)}


def g(name, key, default=0):
    return m.get(name, {}).get(key, default)


limit = g("limit_input", "eps")
limit_ev = g("limit_events", "eps")
# The producer's limit: the preload of the input topics, the same records.
limit_prod = g("preload_input", "eps")
limit_io = min(x for x in (limit, limit_prod) if x) if (limit or limit_prod) \
    else 0
stages = {}
for name, lim in (("ingest", limit_io), ("aggregate", limit_ev),
                  ("rules", None), ("sink", None)):
    x = dict(m.get(name, {}))
    # aggregate's input also holds watermark markers: its events/s counts
    # the events only (the same elapsed time).
    ev = g(name + "_events", "events")
    if ev and x.get("events"):
        x["eps"] = x.get("eps", 0) * ev / x["events"]
        x["cpu_s_per_m"] = x.get("cpu_s", 0) / ev * 1e6 if x.get("cpu_s") \
            else x.get("cpu_s_per_m", 0) * x["events"] / ev
        x["events"] = ev
    stages[name] = {
        "events": int(x.get("events", 0)), "eps": x.get("eps", 0),
        "cpu_s_per_million": x.get("cpu_s_per_m", 0),
        "redis_cpu_s": x.get("also_cpu_s", 0),
        "peak_rss_kb": int(x.get("hwm_kb", 0)),
        "rss_half_kb": int(x.get("rss_half_kb", 0)),
        "rss_end_kb": int(x.get("rss_end_kb", 0)),
        "ratio_to_limit": round(x.get("eps", 0) / lim, 3) if lim else None,
    }
stages["aggregate"]["ratio_to_events_limit"] = \
    round(stages["aggregate"]["eps"] / limit_ev, 3) if limit_ev else None
agg_events = stages["aggregate"]["events"]
redis_cpu_per_m = stages["aggregate"]["redis_cpu_s"] / agg_events * 1e6 \
    if agg_events else None

scale = []
for tag in ("s1", "s2", "s3", "p1", "p4"):
    if "scale_" + tag not in m:
        continue
    a, r = dict(m.get("scale_aggregate_" + tag, {})), \
        m.get("scale_rules_" + tag, {})
    ev = g("scale_markers_" + tag, "events")
    if ev and a.get("events"):
        a["eps"] = a.get("eps", 0) * ev / a["events"]
    scale.append({
        "run": tag, "scopes": int(g("scale_" + tag, "scopes")),
        "partitions": int(g("scale_" + tag, "partitions")),
        "aggregate_eps": a.get("eps", 0),
        "aggregate_peak_rss_kb": int(a.get("hwm_kb", 0)),
        "aggregate_redis_cpu_s": a.get("also_cpu_s", 0),
        "redis_used_memory": int(g("scale_redis_" + tag, "used_memory")),
        "rules_eps": r.get("eps", 0),
        "rules_peak_rss_kb": int(r.get("hwm_kb", 0)),
    })

redis = {
    "hincrby_pipelined_rps": g("redis_hincrby", "rps"),
    "pfadd_pipelined_rps": g("redis_pfadd", "rps"),
    "zadd_pipelined_rps": g("redis_zadd", "rps"),
    "evalsha_calls_ps": g("redis_evalsha", "calls_ps"),
    "evalsha_entries_ps": g("redis_evalsha", "calls_ps") * 100,
    "evalsha_cmds_ps": g("redis_evalsha", "calls_ps") * 900,
}

# End to end: CPU seconds per million events sent, per process, and the
# cores they add up to at the headline rate.
e2e_cpu = {}
sent = gen.get("sent", 0)
if "e2e_cpu" in m and sent:
    e2e_cpu = {k: round(v / sent * 1e6, 2) for k, v in m["e2e_cpu"].items()}
    e2e_cpu["total"] = round(sum(e2e_cpu.values()), 2)

# The peers phase: events/s, CPU s per million events and events per CPU
# second of each run (bench/peers/phase.sh), and spendguard's ratio to each.
peers = {}
for name in ("spendguard", "flink", "ks_eos", "ks_alos"):
    x = m.get("peers_" + name)
    if not x or not x.get("cpu_s"):
        continue
    ev = x.get("events", 0)
    peers[name] = {
        "events": int(ev), "eps": x.get("eps", 0),
        "cpu_s": x.get("cpu_s", 0),
        "cpu_s_per_million": round(x["cpu_s"] / ev * 1e6, 2) if ev else None,
        "events_per_cpu_s": round(ev / x["cpu_s"]) if ev else None,
        "peak_rss_kb": int(x.get("peak_rss_kb", 0)),
        "broker_cpu_s": x.get("broker_cpu_s"),
        "process_cpu_s": x.get("process_cpu_s"),
    }
    lat = m.get("peers_latency_" + ("sg" if name == "spendguard" else name))
    if lat:
        peers[name]["latency"] = {k: lat.get(k) for k in
                                  ("windows", "p50_ms", "p99_ms", "max_ms",
                                   "lateness_s", "load")}
sg_per_cpu = peers.get("spendguard", {}).get("events_per_cpu_s")
for name, x in peers.items():
    x["sg_ratio"] = round(sg_per_cpu / x["events_per_cpu_s"], 2) \
        if sg_per_cpu and x["events_per_cpu_s"] else None
# Kafka Streams' headline: the cheaper of its two guarantees.
ks_best = max((k for k in ("ks_eos", "ks_alos") if k in peers),
              key=lambda k: peers[k]["events_per_cpu_s"] or 0, default=None)
peers_check = m.get("peers_check", {})

res = {
    "wall_s": round(wall_ms / 1000.0, 1),
    "limit": {"input_eps": limit, "producer_eps": limit_prod,
              "ingest_limit_eps": limit_io,
              "input_cpu_s_per_million":
              g("limit_input", "cpu_s_per_m"),
              "events_eps": limit_ev, "redis": redis},
    "preload": {"input": m.get("preload_input", {}),
                "events": m.get("preload_events", {})},
    "stages": stages,
    "aggregate_redis_used_memory": int(g("aggregate_redis", "used_memory")),
    "aggregate_redis_cpu_s_per_million": redis_cpu_per_m,
    "e2e": {"steps": steps, "warmup": warmup_steps, "generator": gen,
            "fixed_rate": fixed_rate,
            "p50_ms": headline["p50_ms"] if headline else None,
            "p99_ms": headline["p99_ms"] if headline else None,
            "max_ms": headline["max_ms"] if headline else None,
            "sustainable_eps": sustainable,
            "cpu_s_per_million": e2e_cpu, "hops": hops},
    "scale": scale,
    "peers": {"runs": peers, "check": peers_check,
              "preload": m.get("peers_preload", {}),
              "kstreams_headline": ks_best},
}
with open(out_path, "w") as fp:
    json.dump(res, fp, indent=2)
    fp.write("\n")


def n(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)


print()
print("limits (same broker, same consumer settings)")
print("  bare consumer, input topics     %12s ev/s  (%s CPU s per M)" %
      (n(limit), n(g("limit_input", "cpu_s_per_m"), "{:.2f}")))
print("  bare producer, input topics     %12s ev/s  (the preload)" %
      n(limit_prod))
print("  bare consumer, sg.events        %12s ev/s" % n(limit_ev))
print("  redis pipelined (-P 64)  HINCRBY %s  PFADD %s  ZADD %s  ops/s" %
      (n(redis["hincrby_pipelined_rps"]), n(redis["pfadd_pipelined_rps"]),
       n(redis["zadd_pipelined_rps"])))
print("  redis EVALSHA apply-like script %12s entries/s (%s commands/s)" %
      (n(redis["evalsha_entries_ps"]), n(redis["evalsha_cmds_ps"])))
print()
print("each stage alone over a preloaded input")
print("  %-10s %10s %10s %8s %10s %10s %10s %8s" %
      ("stage", "records", "rec/s", "ratio", "CPU s/M", "redis CPU", "peak RSS",
       "RSS half"))
for name, s in stages.items():
    print("  %-10s %10s %10s %8s %10s %10s %8s MB %6s MB" % (
        name, n(s["events"]), n(s["eps"]),
        n(s["ratio_to_limit"], "{:.2f}"), n(s["cpu_s_per_million"], "{:.2f}"),
        n(s["redis_cpu_s"], "{:.2f}s"), n(s["peak_rss_kb"] / 1024.0),
        n(s["rss_half_kb"] / 1024.0)))
print("  (ingest: ratio to min(bare consumer, bare producer); aggregate: to "
      "the bare consumer on sg.events, events only, markers left out;")
print("   rules and sink: records are snapshots and decisions)")
print("  redis-server CPU s per million events, aggregate alone: %s" %
      n(redis_cpu_per_m, "{:.2f}"))
print()
print("end to end, paced (event time = scheduled send time); latency = read "
      "on ad-decisions - window end")
for st in warmup_steps:
    print("  (first %.0f s at %s/s warmed the pipeline up: not counted)" % (
        (st["end_ms"] - st["start_ms"]) / 1000.0, n(st["rate"])))
print("  %10s %6s %10s %8s %8s %8s %10s" %
      ("offered/s", "secs", "decisions", "p50 ms", "p99 ms", "max ms",
       "sustained"))
for st in steps:
    print("  %10s %6.0f %10s %8s %8s %8s %10s" % (
        n(st["rate"]), (st["end_ms"] - st["start_ms"]) / 1000.0,
        "%d/%d" % (st["alerts"], st["alerts_expected"]), n(st["p50_ms"]),
        n(st["p99_ms"]), n(st["max_ms"]), "yes" if st["sustained"] else "no"))
print("  generator: most behind schedule %s ms; highest sustained load %s ev/s"
      % (n(gen.get("behind_max_ms"), "{:.1f}"), n(sustainable)))
if hops:
    print("  where the latency goes at %s ev/s, p50/p99 ms: " % n(fixed_rate) +
          ", ".join("%s %s/%s" % (k, n(v["p50_ms"]), n(v["p99_ms"]))
                    for k, v in hops.items()))
    print("   (window end -> aggregate's snapshot -> rules' decision -> "
          "the sink's copy -> read)")
if e2e_cpu:
    print("  CPU s per million events sent: " + ", ".join(
        "%s %.2f" % (k, v) for k, v in e2e_cpu.items()))
    print("  i.e. %.2f cores at %s ev/s (the machine has 2)" %
          (e2e_cpu["total"] * fixed_rate / 1e6, n(fixed_rate)))
print()
print("cost growth (aggregate: %s events, rules: %s snapshots per run)" %
      (n(g("scale_aggregate_s1", "events")), n(g("scale_rules_s1", "events"))))
print("  %8s %5s %12s %10s %12s %12s %10s" %
      ("scopes", "parts", "aggregate/s", "agg RSS", "redis mem", "rules/s",
       "rules RSS"))
for s in scale:
    print("  %8s %5d %12s %7s MB %9s MB %12s %7s MB" % (
        n(s["scopes"]), s["partitions"], n(s["aggregate_eps"]),
        n(s["aggregate_peak_rss_kb"] / 1024.0),
        n(s["redis_used_memory"] / 1048576.0), n(s["rules_eps"]),
        n(s["rules_peak_rss_kb"] / 1024.0)))
if peers:
    pre = m.get("peers_preload", {})
    print()
    print("peers: the same windowed job over the same %s preloaded events, "
          "real Kafka, each alone (lateness %s s)" %
          (n(pre.get("sent")), n(pre.get("lateness_s"))))
    print("  %-24s %10s %10s %9s %12s %9s %8s %10s %9s" %
          ("run", "events", "ev/s", "CPU s/M", "ev/CPU s", "sg ratio",
           "peak RSS", "broker CPU", "JVM CPU"))
    labels = {"spendguard": "spendguard ingest+aggr.", "flink": "Flink 2.2",
              "ks_eos": "KStreams exactly_once_v2",
              "ks_alos": "KStreams at_least_once"}
    for name, x in peers.items():
        print("  %-24s %10s %10s %9s %12s %9s %5s MB %9s s %8s s" % (
            labels[name], n(x["events"]), n(x["eps"]),
            n(x["cpu_s_per_million"], "{:.2f}"), n(x["events_per_cpu_s"]),
            n(x["sg_ratio"], "{:.2f}"), n(x["peak_rss_kb"] / 1024.0),
            n(x["broker_cpu_s"], "{:.2f}"), n(x["process_cpu_s"], "{:.2f}")))
    print("  (CPU: first input record to the last addition to a window, all "
          "of the run's processes; spendguard's: ingest, aggregate, "
          "redis-server;")
    print("   broker CPU: over the whole run, apart; JVM CPU: the whole JVM, "
          "start-up included)")
    lats = {k: x["latency"] for k, x in peers.items() if "latency" in x}
    if lats:
        any_lat = next(iter(lats.values()))
        print("  latency at a paced load of %s (rate:s), lateness %s s: "
              "window end -> its row read on the output topic" %
              (any_lat.get("load"), n(any_lat.get("lateness_s"))))
        for k, v in lats.items():
            print("    %-24s %6s windows  p50 %6s ms  p99 %6s ms  max %6s ms" % (
                labels[k], n(v.get("windows")), n(v.get("p50_ms")),
                n(v.get("p99_ms")), n(v.get("max_ms"))))
    print("  agreement: %s windows compared, %s" % (
        n(peers_check.get("windows")),
        "all equal" if peers_check.get("ok") == 1 else
        "MISMATCH: " + " ".join("%s=%d" % (k, v) for k, v in
                                peers_check.items() if k != "ok")))

print()
print("wall time %.0f s; results in %s" % (wall_ms / 1000.0, out_path))
print("bench: limit_eps=%d ingest_eps=%d ingest_ratio=%.2f aggregate_eps=%d "
      "aggregate_ratio=%.2f e2e_p50_ms=%s e2e_p99_ms=%s redis_cpu_s_per_m=%s "
      "sustained_eps=%d" % (
          limit, stages["ingest"]["eps"],
          stages["ingest"]["ratio_to_limit"] or 0,
          stages["aggregate"]["eps"],
          stages["aggregate"]["ratio_to_limit"] or 0,
          n(res["e2e"]["p50_ms"], "{:.0f}").replace(",", ""),
          n(res["e2e"]["p99_ms"], "{:.0f}").replace(",", ""),
          n(redis_cpu_per_m, "{:.2f}"), sustainable), end="")
if "flink" in peers and ks_best:
    print(" flink_eps=%d kstreams_eps=%d vs_flink=%.2f vs_kstreams=%.2f" % (
        peers["flink"]["eps"], peers[ks_best]["eps"],
        peers["flink"]["sg_ratio"] or 0, peers[ks_best]["sg_ratio"] or 0),
        end="")
print()
