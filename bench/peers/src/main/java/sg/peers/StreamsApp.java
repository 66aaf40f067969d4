package sg.peers;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The job on Kafka Streams: the three input topics, event time from the
 * record, flatMap to the two scopes, groupByKey (a repartition topic),
 * 10 s tumbling windows with grace = lateness, suppress until the window
 * closes, one text row per closed window. Two stream threads.
 *
 *   StreamsApp BOOTSTRAP SCHEMAS_DIR OUT_TOPIC LATENESS_S EVENTS GUARANTEE TOPIC...
 *   (GUARANTEE: exactly_once_v2 | at_least_once; EVENTS 0: until SIGTERM,
 *   for the paced latency run)
 */
public final class StreamsApp {
    private static String schemas;
    private static final ThreadLocal<Decoder> DEC = ThreadLocal.withInitial(() -> {
        try {
            return new Decoder(schemas);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    });

    static final class EventTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> r, long partitionTime) {
            try {
                return DEC.get().eventTime((byte[]) r.value());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    public static void main(String[] a) throws Exception {
        String boot = a[0], outTopic = a[2], guarantee = a[5];
        schemas = a[1];
        long lateness = Long.parseLong(a[3]);
        Meter.expect(Long.parseLong(a[4]));
        List<String> topics = new ArrayList<>(List.of(a).subList(6, a.length));
        Serde<Counts> counts = Serdes.serdeFrom((t, c) -> c == null ? null : c.bytes(),
                (t, b) -> b == null ? null : Counts.of(b));

        StreamsBuilder b = new StreamsBuilder();
        b.stream(topics, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray())
                        .withTimestampExtractor(new EventTime()))
                .flatMap((k, v) -> {
                    Meter.seen();
                    List<Counts> l = new ArrayList<>(2);
                    try {
                        DEC.get().decode(v, l);
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                    return List.of(KeyValue.pair(l.get(0).scope, l.get(0)),
                            KeyValue.pair(l.get(1).scope, l.get(1)));
                })
                .groupByKey(Grouped.with("scopes", Serdes.String(), counts))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10),
                        Duration.ofSeconds(lateness)))
                .aggregate(Counts::new, (k, v, acc) -> {
                    Meter.added();
                    return acc.add(v);
                }, Materialized.<String, Counts, WindowStore<Bytes, byte[]>>with(
                        Serdes.String(), counts))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((w, c) -> KeyValue.pair(w.key(), c.row(w.key(), w.window().start())))
                .to(outTopic, Produced.with(Serdes.String(), Serdes.String()));

        Properties p = new Properties();
        // Its own id per run: the internal topics (repartition, changelogs)
        // of the throughput run must not feed the paced one.
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, "peers-ks-" + guarantee
                + (a[4].equals("0") ? "-paced" : ""));
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
        p.put(StreamsConfig.STATE_DIR_CONFIG,
                Files.createTempDirectory("sg-peers-ks").toString());
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put("consumer.auto.offset.reset", "earliest");
        KafkaStreams ks = new KafkaStreams(b.build(), p);
        if (a[4].equals("0")) { // the paced latency run: until SIGTERM
            Runtime.getRuntime().addShutdownHook(new Thread(() -> ks.close(Duration.ofSeconds(30))));
            ks.start();
            Thread.currentThread().join();
        }
        ks.start();
        String line = Meter.await(600_000);
        // The rows of the windows already closed: flushed (and with
        // exactly_once_v2 committed) by close.
        ks.close(Duration.ofSeconds(60));
        if (line == null) {
            System.err.println("kstreams: no input counted in time");
            System.exit(1);
        }
        System.out.println(line);
        System.exit(0);
    }
}
