#!/usr/bin/env python3
"""spendguard's side of the peers phase, measured as bench/peers' Meter
measures a JVM peer: from ingest's first input record (its events_total
counters) to aggregate's last addition to the window state (applied or
late: each event once), the wall time and the CPU seconds of every given
process (ingest, aggregate, redis-server), and their peak RSS. Sampled
every 50 ms; the end is the whole input, or no progress for 30 s.

  measure.py EXPECT INGEST_METRICS_URL AGGREGATE_METRICS_URL NAME:PID...

Prints: events=N seconds=S eps=E cpu_s=C peak_rss_kb=K NAME_cpu_s=C ...
"""
import os
import re
import sys
import time
import urllib.request

STALL_S = 30.0
TIMEOUT_S = 600.0
TICK = os.sysconf("SC_CLK_TCK")
LINE = re.compile(r'^\S*events_total\{([^}]*)\}\s+(\d+)', re.M)


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def events(url, results):
    """Sum of events_total{...result="R"} over R in results, or 0."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0
    n = 0
    for labels, v in LINE.findall(text):
        m = re.search(r'result="([^"]*)"', labels)
        if m and m.group(1) in results:
            n += int(v)
    return n


def main():
    expect, ingest_url, agg_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    procs = [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[4:]]
    deadline = time.monotonic() + TIMEOUT_S
    t0 = None
    while t0 is None:
        if time.monotonic() > deadline:
            sys.exit("measure: ingest read nothing")
        if events(ingest_url, ("accepted", "rejected")) > 0:
            t0 = time.monotonic()
            cpu0 = {n: cpu_s(p) for n, p in procs}
        else:
            time.sleep(0.05)
    last, last_t, last_cpu = -1, t0, cpu0
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = events(agg_url, ("applied", "late"))
        now = time.monotonic()
        if n != last:
            last, last_t = n, now
            last_cpu = {name: cpu_s(p) for name, p in procs}
        if n > 0 and (n >= expect or now - last_t > STALL_S):
            break
    else:
        sys.exit("measure: timeout")
    s = last_t - t0
    per = {name: last_cpu[name] - cpu0[name] for name, _ in procs}
    out = (f"events={last} seconds={s:.3f} eps={last / s:.0f} "
           f"cpu_s={sum(per.values()):.2f} "
           f"peak_rss_kb={sum(peak_kb(p) for _, p in procs)}")
    for name, p in procs:
        out += f" {name}_cpu_s={per[name]:.2f} {name}_rss_kb={peak_kb(p)}"
    print(out)


if __name__ == "__main__":
    main()
