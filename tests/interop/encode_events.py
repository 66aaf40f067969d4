#!/usr/bin/python3
"""Encodes input events with an independent Avro implementation (Apache Avro
for Python) in Confluent framing, for the interop integration test.

usage: encode_events.py SCHEMA_DIR OUT_RECORDS OUT_TRUTH BASE_TIME_MS

OUT_RECORDS: a sequence of records <u16 topic length><topic><u32 value
length><value>, big-endian. OUT_TRUTH: JSON lines, one per scope, with the
ChannelKpi counters the pipeline must report for channel "pyint".
"""
import datetime
import io
import json
import struct
import sys

import avro.io
import avro.schema

TYPES = {  # type: (schema file, Confluent id, topic)
    "impression": ("impression.avsc", 1, "ad-impressions"),
    "click": ("click.avsc", 2, "ad-clicks"),
    "conversion": ("conversion.avsc", 3, "ad-conversions"),
}
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HUMAN_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def millis(ms):
    """The datetime that python-avro writes as timestamp-millis ms."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def main():
    schema_dir, out_records, out_truth, base = sys.argv[1:5]
    base = int(base)
    schemas = {}
    for t, (f, sid, topic) in TYPES.items():
        with open(f"{schema_dir}/{f}") as fp:
            schemas[t] = avro.schema.parse(fp.read())
    truth = {}
    out = io.BytesIO()

    def count(campaign, field, n):
        for scope in ((None,), (campaign,)):
            key = scope[0]
            row = truth.setdefault(key, {
                "channel": "pyint", "campaign_id": key, "impressions": 0,
                "clicks": 0, "conversions": 0, "spend_micros": 0,
                "revenue_micros": 0, "invalid_clicks": 0,
                "invalid_impressions": 0, "invalid_spend_micros": 0})
            row[field] += n

    def emit(t, rec):
        f, sid, topic = TYPES[t]
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", sid))
        avro.io.DatumWriter(schemas[t]).write(rec, avro.io.BinaryEncoder(buf))
        value = buf.getvalue()
        out.write(struct.pack(">H", len(topic)) + topic.encode())
        out.write(struct.pack(">I", len(value)) + value)

    n = 0
    for i in range(300):
        campaign = f"py-c{i % 4}"
        bot = i % 10 == 0
        ua = BOT_UA if bot else HUMAN_UA
        t = base + i * 100
        common = {"channel": "pyint", "campaign_id": campaign,
                  "ad_id": f"ad-{i % 7}", "device_id": f"dev-{i % 50}",
                  "ip": f"10.1.{i % 5}.{i % 200}", "user_agent": ua,
                  "country": "DE" if i % 2 else None}
        imp = dict(common, event_id=f"py-imp-{i}", event_time=millis(t),
                   cost_micros=1500 + i)
        emit("impression", imp)
        count(campaign, "impressions", 1)
        count(campaign, "spend_micros", imp["cost_micros"])
        if bot:
            count(campaign, "invalid_impressions", 1)
            count(campaign, "invalid_spend_micros", imp["cost_micros"])
        if i % 3 == 0:
            clk = dict(common, event_id=f"py-clk-{i}", event_time=millis(t + 10),
                       cost_micros=250000, impression_id=imp["event_id"])
            emit("click", clk)
            count(campaign, "clicks", 1)
            count(campaign, "spend_micros", clk["cost_micros"])
            if bot:
                count(campaign, "invalid_clicks", 1)
                count(campaign, "invalid_spend_micros", clk["cost_micros"])
            if i % 9 == 0:
                conv = dict(common, event_id=f"py-conv-{i}",
                            event_time=millis(t + 20), revenue_micros=9990000,
                            click_id=clk["event_id"])
                del conv["ad_id"]  # an optional field absent
                emit("conversion", conv)
                count(campaign, "conversions", 1)
                count(campaign, "revenue_micros", conv["revenue_micros"])
        n += 1
    with open(out_records, "wb") as fp:
        fp.write(out.getvalue())
    with open(out_truth, "w") as fp:
        for key in sorted(truth, key=lambda k: (k is not None, k or "")):
            fp.write(json.dumps(truth[key]) + "\n")


if __name__ == "__main__":
    main()
