#!/usr/bin/python3
"""Decodes Confluent-framed Avro decisions with an independent Avro
implementation and the project's decision.avsc, one JSON object per line.

usage: decode_decisions.py DECISION_AVSC RECORDS
RECORDS: a sequence of <u32 length><value>, big-endian.
"""
import io
import json
import struct
import sys

import avro.io
import avro.schema


def main():
    with open(sys.argv[1]) as fp:
        schema = avro.schema.parse(fp.read())
    reader = avro.io.DatumReader(schema)
    data = open(sys.argv[2], "rb").read()
    off = 0
    while off < len(data):
        (n,) = struct.unpack(">I", data[off:off + 4])
        value = data[off + 4:off + 4 + n]
        off += 4 + n
        if value[0] != 0 or struct.unpack(">I", value[1:5])[0] != 6:
            print(json.dumps({"error": "bad framing"}))
            continue
        rec = reader.read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))
        for k in ("window_start", "window_end", "decided_at"):
            # python-avro reads timestamp-millis as datetime
            rec[k] = round(rec[k].timestamp() * 1000)
        print(json.dumps(rec, sort_keys=True))


if __name__ == "__main__":
    main()
