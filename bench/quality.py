#!/usr/bin/env python3
"""The report of `make quality` (bench/quality.sh): sg-gen's truth of the
incidents against the decisions sg-bench-latency read from ad-decisions.
Arguments: truth.jsonl latency.log out.json. Prints a table per incident and
the line `quality: incidents=N ...`; writes the same figures to out.json.
Definitions: docs/rules.md, "Measured"."""
import json
import sys

truth_path, dec_path, out_path = sys.argv[1:4]

incidents, healthy = [], []
for line in open(truth_path):
    o = json.loads(line)
    if "incident" in o:
        incidents.append(o["incident"])
    elif "healthy_channels" in o:
        healthy = o["healthy_channels"]

# sg-bench-latency: recv_ms window_start window_end action rule channel
# kafka_ts_ms campaign running (its log lines are mixed in: skipped).
decisions = []
for line in open(dec_path):
    f = line.split()
    if len(f) != 9 or not f[0].isdigit():
        continue
    decisions.append({"recv": int(f[0]), "end": int(f[2]), "action": f[3],
                      "rule": f[4], "channel": f[5], "ts": int(f[6]),
                      "campaign": None if f[7] == "-" else f[7],
                      "running": f[8] == "1"})
decisions.sort(key=lambda d: d["ts"])


def pct(xs, p):
    """Nearest rank: the smallest value with at least p% at or below it."""
    if not xs:
        return None
    xs = sorted(xs)
    k = max(1, -(-len(xs) * p // 100))
    return xs[int(k) - 1]


def channel_decisions(ch, action, campaign_scope=False):
    return [d for d in decisions if d["channel"] == ch and d["action"] == action
            and (d["campaign"] is not None) == campaign_scope]


rows = []
for inc in incidents:
    ch, rate = inc["channel"], inc["rate"]
    onset, trig = inc["onset_wall_ms"], inc["trigger_wall_ms"]
    pauses = channel_decisions(ch, "PAUSE")
    resumes = channel_decisions(ch, "RESUME")
    after = [d for d in pauses if onset is not None and d["ts"] >= onset]
    first = after[0] if after else None
    row = {"index": inc["index"], "channel": ch, "rate": rate,
           "length_s": (inc["end_ms"] - inc["start_ms"]) // 1000,
           "onset_wall_ms": onset, "trigger_wall_ms": trig,
           "pause_ts_ms": first["ts"] if first else None,
           "pause_rule": first["rule"] if first else None,
           "pause_running": first["running"] if first else None,
           "pauses": len(pauses), "resumes": len(resumes),
           "pauses_before_onset": len(pauses) - len(after),
           "campaign_pauses": len(channel_decisions(ch, "PAUSE", True))}
    if first:
        row["onset_to_pause_ms"] = first["ts"] - onset
        row["processing_delay_ms"] = (first["ts"] - trig
                                      if trig is not None else None)
        # The wave's clicks are evenly spaced from its onset (sg-gen's
        # accumulator: exact to one click); those sent before the PAUSE.
        n = min(inc["clicks"], (first["ts"] - onset) * rate // 1000 + 1)
        row["invalid_spend_before_pause_micros"] = n * inc["click_cost_micros"]
    else:
        row["onset_to_pause_ms"] = None
        row["processing_delay_ms"] = None
        row["invalid_spend_before_pause_micros"] = inc["invalid_spend_micros"]
    rows.append(row)

o2p = [r["onset_to_pause_ms"] for r in rows if r["onset_to_pause_ms"] is not None]
proc = [r["processing_delay_ms"] for r in rows
        if r["processing_delay_ms"] is not None]
healthy_paused = sorted({d["channel"] for d in decisions
                         if d["action"] == "PAUSE" and d["channel"] in healthy})
summary = {
    "incidents": len(rows),
    "onset_to_pause_p50_ms": pct(o2p, 50),
    "onset_to_pause_p99_ms": pct(o2p, 99),
    "onset_to_pause_max_ms": max(o2p) if o2p else None,
    "missed": sum(1 for r in rows if r["pause_ts_ms"] is None),
    "processing_delay_p50_ms": pct(proc, 50),
    "processing_delay_p99_ms": pct(proc, 99),
    "processing_delay_min_ms": min(proc) if proc else None,
    "invalid_spend_before_pause_micros":
        sum(r["invalid_spend_before_pause_micros"] for r in rows),
    "invalid_spend_total_micros": sum(i["invalid_spend_micros"] for i in incidents),
    "healthy_channels": len(healthy),
    "healthy_paused": len(healthy_paused),
    "healthy_paused_channels": healthy_paused,
    "pairs_max": max((max(r["pauses"], r["resumes"]) for r in rows), default=0),
    "pauses_before_onset": sum(r["pauses_before_onset"] for r in rows),
    "paused_on_running_window": sum(1 for r in rows if r["pause_running"]),
}
by_rate = {}
for r in rows:
    by_rate.setdefault(r["rate"], []).append(r)
summary["by_rate"] = {
    str(rate): {"incidents": len(rs),
                "onset_to_pause_p50_ms": pct([r["onset_to_pause_ms"] for r in rs
                                              if r["onset_to_pause_ms"] is not None], 50),
                "onset_to_pause_max_ms": max([r["onset_to_pause_ms"] for r in rs
                                              if r["onset_to_pause_ms"] is not None],
                                             default=None)}
    for rate, rs in sorted(by_rate.items())}

print("%-3s %-8s %5s %4s %9s %9s %13s %7s %s" % (
    "#", "channel", "bots/s", "len", "onset->P", "trig->P", "invalid spend",
    "P/R", "rule"))
for r in rows:
    def ms(v):
        return "-" if v is None else "%d" % v
    print("%-3d %-8s %5d %4d %9s %9s %13.2f %3d/%-3d %s" % (
        r["index"], r["channel"], r["rate"], r["length_s"],
        ms(r["onset_to_pause_ms"]), ms(r["processing_delay_ms"]),
        r["invalid_spend_before_pause_micros"] / 1e6, r["pauses"], r["resumes"],
        (r["pause_rule"] or "-") + (" (running)" if r["pause_running"] else "")))
for rate, b in summary["by_rate"].items():
    print("rate %s/s: %d incidents, onset->PAUSE p50 %s ms, max %s ms" % (
        rate, b["incidents"], b["onset_to_pause_p50_ms"], b["onset_to_pause_max_ms"]))
if healthy_paused:
    print("healthy channels paused: " + " ".join(healthy_paused))

with open(out_path, "w") as fp:
    json.dump({"summary": summary, "incidents": rows}, fp, indent=1)
    fp.write("\n")


def v(x):
    return "none" if x is None else str(x)


print("quality: incidents=%d onset_to_pause_p50_ms=%s p99_ms=%s max_ms=%s "
      "missed=%d processing_delay_p99_ms=%s invalid_spend_before_pause_micros=%d "
      "healthy_paused=%d pairs_max=%d" % (
          summary["incidents"], v(summary["onset_to_pause_p50_ms"]),
          v(summary["onset_to_pause_p99_ms"]), v(summary["onset_to_pause_max_ms"]),
          summary["missed"], v(summary["processing_delay_p99_ms"]),
          summary["invalid_spend_before_pause_micros"], summary["healthy_paused"],
          summary["pairs_max"]))
