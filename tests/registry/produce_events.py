"""Writes impressions, clicks and conversions for channel "kol" with
Confluent's own producer stack: confluent_kafka.Producer, AvroSerializer
and SchemaRegistryClient (auto-registration under the topic-name strategy,
<topic>-value), with writer schemas evolved from spendguard's contract
schemas: an extra optional field (placement) and the money field moved to
the front. Half the clicks come from a bot, so the ivt_circuit_breaker rule
pauses kol: 400 clicks over 160 s of event time, so at least one 1 m window
fills up (150 clicks) while it is open, and the rule (min_clicks 100) sees
it in a rolling snapshot.

usage: produce_events.py SCHEMA_DIR REGISTRY_URL BOOTSTRAP OUT_TRUTH BASE_MS

OUT_TRUTH: JSON lines, one per scope, with the ChannelKpi counters the
pipeline must report. Prints the schema id each subject got, and how
many ChannelKpi rows the events close: a row per scope and 1 m window that
ends at least the allowed lateness (30 s) before the last event, the
watermark once every input is idle (docs/watermark.md).
"""
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

HUMAN_UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CHANNEL = "kol"
TYPES = {  # type: (contract schema, topic, money field)
    "impression": ("impression.avsc", "ad-impressions", "cost_micros"),
    "click": ("click.avsc", "ad-clicks", "cost_micros"),
    "conversion": ("conversion.avsc", "ad-conversions", "revenue_micros"),
}


def evolved(path, money):
    """The contract schema with money first and an extra field last."""
    with open(path) as fp:
        s = json.load(fp)
    fields = s["fields"]
    first = [f for f in fields if f["name"] == money]
    rest = [f for f in fields if f["name"] != money]
    s["fields"] = first + rest + [
        {"name": "placement", "type": ["null", "string"], "default": None}]
    s["doc"] = "evolved by a producer: money first, placement added"
    return json.dumps(s)


def main():
    schema_dir, url, bootstrap, out_truth, base = sys.argv[1:6]
    base = int(base)
    client = SchemaRegistryClient({"url": url})
    ser = {t: AvroSerializer(client, evolved(f"{schema_dir}/{f}", m),
                             conf={"auto.register.schemas": True})
           for t, (f, _, m) in TYPES.items()}
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": False, "linger.ms": 5})
    failed = []
    truth = {}

    def delivered(err, msg):
        if err is not None:
            failed.append(str(err))

    def count(campaign, field, n):
        for key in (None, campaign):
            row = truth.setdefault(key, {
                "channel": CHANNEL, "campaign_id": key, "impressions": 0,
                "clicks": 0, "conversions": 0, "spend_micros": 0,
                "revenue_micros": 0, "invalid_clicks": 0,
                "invalid_impressions": 0, "invalid_spend_micros": 0})
            row[field] += n

    def send(t, rec):
        topic = TYPES[t][1]
        value = ser[t](rec, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, value=value, on_delivery=delivered)
        producer.poll(0)

    windows = set()  # (window start, campaign or None)
    last = [0]  # the highest event time

    def scope(t, campaign):
        w = t // 60000 * 60000
        windows.add((w, None))
        windows.add((w, campaign))
        last[0] = max(last[0], t)

    for i in range(800):
        campaign = f"kol-r{i % 2}"
        bot = i % 4 == 1  # every other click
        ua = BOT_UA if bot else HUMAN_UA
        t = base + i * 200
        common = {"channel": CHANNEL, "campaign_id": campaign,
                  "ad_id": f"ad-{i}", "device_id": f"dev-{i}",
                  "ip": f"10.9.{i % 5}.{i % 200}", "user_agent": ua,
                  "country": "NL" if i % 3 else None,
                  "placement": None if i % 2 else f"slot-{i % 5}"}
        imp = dict(common, event_id=f"kol-imp-{i}", event_time=t,
                   cost_micros=1000 + i)
        send("impression", imp)
        scope(t, campaign)
        count(campaign, "impressions", 1)
        count(campaign, "spend_micros", imp["cost_micros"])
        if bot:
            count(campaign, "invalid_impressions", 1)
            count(campaign, "invalid_spend_micros", imp["cost_micros"])
        if i % 2 == 1:
            clk = dict(common, event_id=f"kol-clk-{i}", event_time=t + 10,
                       cost_micros=2000 + i, impression_id=imp["event_id"])
            send("click", clk)
            scope(t + 10, campaign)
            count(campaign, "clicks", 1)
            count(campaign, "spend_micros", clk["cost_micros"])
            if bot:
                count(campaign, "invalid_clicks", 1)
                count(campaign, "invalid_spend_micros", clk["cost_micros"])
            if i % 16 == 3:
                conv = dict(common, event_id=f"kol-conv-{i}",
                            event_time=t + 20, revenue_micros=5000000 + i,
                            click_id=clk["event_id"])
                send("conversion", conv)
                scope(t + 20, campaign)
                count(campaign, "conversions", 1)
                count(campaign, "revenue_micros", conv["revenue_micros"])
    windows = {(w, c) for w, c in windows if w + 60000 <= last[0] - 30000}
    left = producer.flush(60)
    if left or failed:
        sys.exit(f"produce_events.py: {left} not delivered, failed: {failed[:3]}")
    with open(out_truth, "w") as fp:
        for key in sorted(truth, key=lambda k: (k is not None, k or "")):
            fp.write(json.dumps(truth[key]) + "\n")
    for t, (_, topic, _) in TYPES.items():
        v = client.get_latest_version(f"{topic}-value")
        print(json.dumps({"subject": f"{topic}-value",
                          "schema_id": v.schema_id}))
    print(json.dumps({"kpi_rows": len(windows)}))


if __name__ == "__main__":
    main()
