#!/usr/bin/env python3
"""The peers phase's agreement check. Each file holds rows
`scope window_start impressions clicks conversions spend revenue`
(Tool rows / Tool finals). spendguard closes the windows whose end its
watermark passed (the last input's event time minus the lateness);
Kafka Streams likewise (stream time minus grace); Flink's bounded source
closes every window at the end of input. So the windows compared are those
up to spendguard's last closed one: each must be in every output, once,
with equal numbers. Windows after it (closed by a peer only) are counted
apart; Flink's must still add up to the whole input.

  check.py EVENTS sg=FILE flink=FILE NAME=FILE...

Prints one line: peers_check windows=W last_start=T ok=0|1 and per output
NAME_rows= NAME_missing= NAME_differ= NAME_dup= NAME_extra= NAME_after=
(flink_total= the events in Flink's channel windows).
"""
import sys


def load(path):
    rows, dup = {}, 0
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) != 7:
                continue
            key, val = (p[0], int(p[1])), tuple(int(x) for x in p[2:])
            if key in rows:
                dup += 1
            rows[key] = val
    return rows, dup


def main():
    events = int(sys.argv[1])
    outs = [a.split("=", 1) for a in sys.argv[2:]]
    ref_name, ref_path = outs[0]
    ref, ref_dup = load(ref_path)
    last = max((s for _, s in ref), default=-1)
    ok = ref_dup == 0 and last >= 0
    line = (f"peers_check windows={len(ref)} last_start={last} "
            f"{ref_name}_rows={len(ref)} {ref_name}_dup={ref_dup}")
    for name, path in outs[1:]:
        rows, dup = load(path)
        missing = sum(1 for k in ref if k not in rows)
        differ = sum(1 for k, v in ref.items() if k in rows and rows[k] != v)
        # A window up to the last compared one that spendguard lacks.
        extra = sum(1 for k in rows if k not in ref and k[1] <= last)
        after = sum(1 for k in rows if k[1] > last)
        ok = ok and not (missing or differ or dup or extra)
        line += (f" {name}_rows={len(rows)} {name}_missing={missing}"
                 f" {name}_differ={differ} {name}_dup={dup}"
                 f" {name}_extra={extra} {name}_after={after}")
        if name == "flink":
            total = sum(v[0] + v[1] + v[2] for k, v in rows.items()
                        if "/" not in k[0])
            ok = ok and total == events
            line += f" flink_total={total}"
    print(f"{line} ok={int(ok)}")


if __name__ == "__main__":
    main()
