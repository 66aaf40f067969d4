package sg.peers;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * The bench's input records: Confluent framing (byte 0 = 0, bytes 1-4 the
 * big-endian schema id: 1 Impression, 2 Click, 3 Conversion; DESIGN.md
 * 3.5), then Avro binary of the contract schema in schemas/. The id names
 * the schema, so no registry is needed. Not thread-safe: one per task.
 */
public final class Decoder {
    private final List<GenericDatumReader<GenericRecord>> readers = new ArrayList<>();
    private final GenericRecord[] reuse = new GenericRecord[4];
    private BinaryDecoder dec;

    public Decoder(String schemasDir) throws IOException {
        readers.add(null);
        for (String f : new String[] {"impression", "click", "conversion"}) {
            Schema s = new Schema.Parser().parse(new File(schemasDir, f + ".avsc"));
            readers.add(new GenericDatumReader<>(s));
        }
    }

    private static int schemaId(byte[] b) {
        if (b == null || b.length < 5 || b[0] != 0)
            throw new IllegalArgumentException("not Confluent-framed");
        int id = ((b[1] & 0xff) << 24) | ((b[2] & 0xff) << 16) | ((b[3] & 0xff) << 8)
                | (b[4] & 0xff);
        if (id < 1 || id > 3)
            throw new IllegalArgumentException("unknown schema id " + id);
        return id;
    }

    /** event_time only: the first field is event_id (a string), the second
     *  event_time, in all three schemas. */
    public long eventTime(byte[] b) throws IOException {
        schemaId(b);
        dec = DecoderFactory.get().binaryDecoder(b, 5, b.length - 5, dec);
        dec.skipString();
        return dec.readLong();
    }

    /** Adds the event's two scopes (channel; channel/campaign) to out. */
    public void decode(byte[] b, List<Counts> out) throws IOException {
        int id = schemaId(b);
        dec = DecoderFactory.get().binaryDecoder(b, 5, b.length - 5, dec);
        GenericRecord r = readers.get(id).read(reuse[id], dec);
        reuse[id] = r;
        String ch = r.get("channel").toString();
        Counts c = new Counts(), k = new Counts();
        if (id == 1) {
            c.impressions = 1;
            c.spend = (Long) r.get("cost_micros");
        } else if (id == 2) {
            c.clicks = 1;
            c.spend = (Long) r.get("cost_micros");
        } else {
            c.conversions = 1;
            c.revenue = (Long) r.get("revenue_micros");
        }
        c.time = k.time = (Long) r.get("event_time");
        k.add(c);
        c.scope = ch;
        k.scope = ch + "/" + r.get("campaign_id");
        out.add(c);
        out.add(k);
    }
}
