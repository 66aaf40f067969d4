"""Reads ad-decisions and channel-kpis as a registry-aware consumer does:
confluent_kafka.Consumer with AvroDeserializer and SchemaRegistryClient
(the writer schema comes from the registry by the id in each record). One
JSON object per record, {"topic", "schema_id", "value"}, in partition and
offset order.

usage: consume_outputs.py REGISTRY_URL BOOTSTRAP MIN_DECISIONS MIN_KPIS
                          TIMEOUT_S
Reads from the beginning until each topic holds at least its minimum and
the end of every partition is reached, or TIMEOUT_S; exits 1 on timeout.
"""
import datetime
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPICS = ("ad-decisions", "channel-kpis")


def plain(v):
    """datetime (timestamp-millis) as epoch ms, recursively."""
    if isinstance(v, datetime.datetime):
        return round(v.timestamp() * 1000)
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def main():
    url, bootstrap = sys.argv[1:3]
    want = dict(zip(TOPICS, map(int, sys.argv[3:5])))
    deadline = time.monotonic() + float(sys.argv[5])
    deser = AvroDeserializer(SchemaRegistryClient({"url": url}))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sg-py-check",
                  "enable.auto.commit": False,
                  "enable.partition.eof": True,
                  "isolation.level": "read_committed"})
    rows = {t: [] for t in TOPICS}
    while True:
        md = c.list_topics(timeout=10)
        parts = [TopicPartition(t, p, 0) for t in TOPICS
                 for p in sorted(md.topics[t].partitions)]
        at_end = set()
        c.assign(parts)
        for t in TOPICS:
            rows[t] = []
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add((m.topic(), m.partition()))
                    continue
                sys.exit(f"consume_outputs.py: {m.error()}")
            ctx = SerializationContext(m.topic(), MessageField.VALUE)
            v = m.value()
            rows[m.topic()].append((m.partition(), m.offset(), {
                "topic": m.topic(),
                "schema_id": int.from_bytes(v[1:5], "big"),
                "value": plain(deser(v, ctx))}))
        done = all(len(rows[t]) >= want[t] for t in TOPICS)
        if done or time.monotonic() >= deadline:
            break
        c.unassign()
        time.sleep(0.5)
    c.close()
    for t in TOPICS:
        for _, _, r in sorted(rows[t], key=lambda x: (x[0], x[1])):
            print(json.dumps(r, sort_keys=True))
    if not done:
        sys.exit(f"consume_outputs.py: want {want}, got "
                 f"{ {t: len(rows[t]) for t in TOPICS} }")


if __name__ == "__main__":
    main()
