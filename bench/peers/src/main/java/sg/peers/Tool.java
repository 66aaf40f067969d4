package sg.peers;

import java.io.File;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The phase's helpers:
 *   Tool create BOOTSTRAP NAME:PARTITIONS...   create topics
 *   Tool rows BOOTSTRAP TOPIC                  print a peer's rows
 *   Tool finals BOOTSTRAP TOPIC SCHEMAS_DIR    print spendguard's closed
 *       10 s windows (final AggregateSnapshots, schema id 5) as rows
 *   Tool arrivals BOOTSTRAP TOPIC [SCHEMAS_DIR]  until SIGTERM, for each
 *       closed window read (from the topic's end, read_committed): its end
 *       and the time it was read, "window_end read_ms" (ms)
 * A row: scope window_start impressions clicks conversions spend revenue,
 * scope = channel or channel/campaign. Topics are read to their end
 * (read_committed).
 */
public final class Tool {
    public static void main(String[] a) throws Exception {
        switch (a[0]) {
            case "create" -> create(a);
            case "rows" -> read(a[1], a[2], null, false);
            case "finals" -> read(a[1], a[2], a[3], false);
            case "arrivals" -> read(a[1], a[2], a.length > 3 ? a[3] : null, true);
            default -> throw new IllegalArgumentException(a[0]);
        }
    }

    static void create(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[1]);
        List<NewTopic> ts = new ArrayList<>();
        for (int i = 2; i < a.length; i++) {
            String[] np = a[i].split(":");
            ts.add(new NewTopic(np[0], Integer.parseInt(np[1]), (short) 1));
        }
        try (Admin ad = Admin.create(p)) {
            ad.createTopics(ts).all().get();
        }
    }

    static void read(String boot, String topic, String schemas, boolean live)
            throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", boot);
        p.put("isolation.level", "read_committed");
        p.put("enable.auto.commit", "false");
        GenericDatumReader<GenericRecord> snap = null;
        if (schemas != null)
            snap = new GenericDatumReader<>(new Schema.Parser()
                    .parse(new File(schemas, "aggregate_snapshot.avsc")));
        BinaryDecoder dec = null;
        PrintStream out = new PrintStream(System.out, false);
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p,
                new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic))
                tps.add(new TopicPartition(topic, pi.partition()));
            c.assign(tps);
            if (live)
                c.seekToEnd(tps);
            else
                c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            while (live || tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                var recs = c.poll(Duration.ofMillis(live ? 20 : 500));
                long now = System.currentTimeMillis();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    if (snap == null) {
                        String row = new String(r.value(), "UTF-8");
                        if (live)
                            out.println((Long.parseLong(row.split(" ")[1]) + 10000) + " " + now);
                        else
                            out.println(row);
                        continue;
                    }
                    byte[] b = r.value();
                    dec = DecoderFactory.get().binaryDecoder(b, 5, b.length - 5, dec);
                    GenericRecord s = snap.read(null, dec);
                    long ws = (Long) s.get("window_start"), we = (Long) s.get("window_end");
                    if (!(Boolean) s.get("final") || we - ws != 10000)
                        continue;
                    Object camp = s.get("campaign_id");
                    String scope = s.get("channel") + (camp == null ? "" : "/" + camp);
                    if (live) {
                        out.println(we + " " + now);
                        continue;
                    }
                    out.println(scope + " " + ws + " " + s.get("impressions") + " "
                            + s.get("clicks") + " " + s.get("conversions") + " "
                            + s.get("spend_micros") + " " + s.get("revenue_micros"));
                }
                if (live)
                    out.flush();
            }
        }
        out.flush();
    }
}
