#!/usr/bin/env python3
"""The paced run's latency: each line of FILE is `window_end read_ms`
(Tool arrivals: a closed window's row read on the output topic); latency =
read - window end, so it includes the lateness the watermark waits.

  latency.py FILE   ->   windows=N p50_ms=X p99_ms=Y max_ms=Z
"""
import sys


def pct(xs, p):
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


lat = []
with open(sys.argv[1]) as f:
    for line in f:
        p = line.split()
        if len(p) == 2:
            lat.append(int(p[1]) - int(p[0]))
lat.sort()
if not lat:
    print("windows=0")
else:
    print(f"windows={len(lat)} p50_ms={pct(lat, 50)} p99_ms={pct(lat, 99)} "
          f"max_ms={lat[-1]}")
