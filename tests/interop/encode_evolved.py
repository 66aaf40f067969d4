#!/usr/bin/python3
"""Encodes input events for channel "evolve" with an independent Avro
implementation (Apache Avro for Python), for the schema-evolution
integration test: clicks written with the evolved writer schema of the
registry (schemas/registry/101.avsc, Confluent id 101: fields reordered, an
extra optional field, cost_micros as int), interleaved with clicks and
impressions of the contract schemas (ids 2 and 1), plus one record of an id
that no registry file declares (999), which must be dead-lettered.

usage: encode_evolved.py SCHEMA_DIR OUT_RECORDS OUT_TRUTH BASE_TIME_MS

OUT_RECORDS: a sequence of records <u16 topic length><topic><u32 value
length><value>, big-endian. OUT_TRUTH: JSON lines, one per scope, with the
ChannelKpi counters the pipeline must report for channel "evolve".
The output is a function of the arguments only.
"""
import datetime
import io
import json
import struct
import sys

import avro.io
import avro.schema

HUMAN_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
            "Chrome/120.0 Safari/537.36")
CHANNEL = "evolve"
N = 240  # events; see the mix in main()


def millis(ms):
    """The datetime that python-avro writes as timestamp-millis ms."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def parse(path):
    with open(path) as fp:
        return avro.schema.parse(fp.read())


def main():
    schema_dir, out_records, out_truth, base = sys.argv[1:5]
    base = int(base)
    writers = {
        1: parse(f"{schema_dir}/impression.avsc"),
        2: parse(f"{schema_dir}/click.avsc"),
        101: parse(f"{schema_dir}/registry/101.avsc"),
    }
    topics = {1: "ad-impressions", 2: "ad-clicks", 101: "ad-clicks",
              999: "ad-clicks"}
    truth = {}
    out = io.BytesIO()

    def count(campaign, field, n):
        for key in (None, campaign):
            row = truth.setdefault(key, {
                "channel": CHANNEL, "campaign_id": key, "impressions": 0,
                "clicks": 0, "conversions": 0, "spend_micros": 0,
                "revenue_micros": 0, "invalid_clicks": 0,
                "invalid_impressions": 0, "invalid_spend_micros": 0})
            row[field] += n

    def emit(sid, rec, writer_id=None):
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", sid))
        schema = writers[writer_id or sid]
        avro.io.DatumWriter(schema).write(rec, avro.io.BinaryEncoder(buf))
        value = buf.getvalue()
        topic = topics[sid]
        out.write(struct.pack(">H", len(topic)) + topic.encode())
        out.write(struct.pack(">I", len(value)) + value)

    for i in range(N):
        campaign = f"ev-c{(i // 7) % 3}"
        t = base + i * 50
        common = {"channel": CHANNEL, "campaign_id": campaign,
                  "ad_id": f"ad-{i}", "device_id": f"evdev-{i}",
                  "ip": f"10.2.{i % 7}.{i % 250}", "user_agent": HUMAN_UA,
                  "country": "FR" if i % 2 else None}
        if i % 2 == 0:
            # The evolved writer: an int cost, placement set on two thirds.
            rec = dict(common, event_id=f"ev-clk101-{i}",
                       event_time=millis(t), cost_micros=1000 + i,
                       placement=None if i % 3 == 0 else f"slot-{i % 4}",
                       impression_id=f"ev-imp-{i}" if i % 4 else None)
            emit(101, rec)
            count(campaign, "clicks", 1)
            count(campaign, "spend_micros", rec["cost_micros"])
        elif i % 4 == 1:
            rec = dict(common, event_id=f"ev-clk2-{i}", event_time=millis(t),
                       cost_micros=200000 + i, impression_id=None)
            emit(2, rec)
            count(campaign, "clicks", 1)
            count(campaign, "spend_micros", rec["cost_micros"])
        else:
            rec = dict(common, event_id=f"ev-imp-{i}", event_time=millis(t),
                       cost_micros=1500)
            emit(1, rec)
            count(campaign, "impressions", 1)
            count(campaign, "spend_micros", rec["cost_micros"])
    # A click framed with an id the registry does not know: counted nowhere.
    rec = dict(common, event_id="ev-unknown", event_time=millis(base),
               cost_micros=5, placement=None, impression_id=None)
    emit(999, rec, writer_id=101)
    with open(out_records, "wb") as fp:
        fp.write(out.getvalue())
    with open(out_truth, "w") as fp:
        for key in sorted(truth, key=lambda k: (k is not None, k or "")):
            fp.write(json.dumps(truth[key]) + "\n")


if __name__ == "__main__":
    main()
