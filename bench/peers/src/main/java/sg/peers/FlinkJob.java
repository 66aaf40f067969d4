package sg.peers;

import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.kafka.clients.consumer.ConsumerRecord;

/**
 * The job on Flink: KafkaSource over the three input topics (bounded at
 * their current end), per-split bounded-out-of-orderness watermarks, keyBy
 * scope, 10 s event-time tumbling windows, one text row per closed window
 * to KafkaSink. A local MiniCluster, parallelism 2, no checkpoints.
 *
 *   FlinkJob BOOTSTRAP SCHEMAS_DIR OUT_TOPIC LATENESS_S EVENTS TOPIC...
 *   (EVENTS 0: unbounded, until SIGTERM, for the paced latency run)
 */
public final class FlinkJob {
    /** Decodes a record into its two scopes. */
    static final class Deser implements KafkaRecordDeserializationSchema<Counts> {
        private final String schemas;
        private transient Decoder dec;
        private transient List<Counts> buf;

        Deser(String schemas) {
            this.schemas = schemas;
        }

        @Override
        public void open(DeserializationSchema.InitializationContext ctx) throws Exception {
            dec = new Decoder(schemas);
            buf = new ArrayList<>(2);
        }

        @Override
        public void deserialize(ConsumerRecord<byte[], byte[]> r, Collector<Counts> out)
                throws IOException {
            Meter.seen();
            buf.clear();
            dec.decode(r.value(), buf);
            for (Counts c : buf)
                out.collect(c);
        }

        @Override
        public TypeInformation<Counts> getProducedType() {
            return TypeInformation.of(Counts.class);
        }
    }

    static final class Sum implements AggregateFunction<Counts, Counts, Counts> {
        public Counts createAccumulator() {
            return new Counts();
        }

        public Counts add(Counts v, Counts acc) {
            Meter.added();
            return acc.add(v);
        }

        public Counts getResult(Counts acc) {
            return acc;
        }

        public Counts merge(Counts a, Counts b) {
            return a.add(b);
        }
    }

    static final class Row extends ProcessWindowFunction<Counts, String, String, TimeWindow> {
        @Override
        public void process(String scope, Context ctx, Iterable<Counts> in, Collector<String> out) {
            for (Counts c : in)
                out.collect(c.row(scope, ctx.window().getStart()));
        }
    }

    public static void main(String[] a) throws Exception {
        String boot = a[0], schemas = a[1], outTopic = a[2];
        long lateness = Long.parseLong(a[3]);
        Meter.expect(Long.parseLong(a[4]));
        List<String> topics = new ArrayList<>(List.of(a).subList(5, a.length));

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(2);
        // EVENTS 0: the paced run (latency), unbounded until SIGTERM.
        boolean paced = a[4].equals("0");
        var sb = KafkaSource.<Counts>builder()
                .setBootstrapServers(boot)
                .setTopics(topics)
                .setGroupId("peers-flink")
                .setStartingOffsets(OffsetsInitializer.earliest())
                .setDeserializer(new Deser(schemas));
        KafkaSource<Counts> source = paced ? sb.build()
                : sb.setBounded(OffsetsInitializer.latest()).build();
        KafkaSink<String> sink = KafkaSink.<String>builder()
                .setBootstrapServers(boot)
                .setRecordSerializer(KafkaRecordSerializationSchema.builder()
                        .setTopic(outTopic)
                        .setValueSerializationSchema(new SimpleStringSchema())
                        .build())
                .setDeliveryGuarantee(DeliveryGuarantee.AT_LEAST_ONCE)
                .build();
        WatermarkStrategy<Counts> wm = WatermarkStrategy
                .<Counts>forBoundedOutOfOrderness(Duration.ofSeconds(lateness))
                .withTimestampAssigner((c, ts) -> c.time);
        env.fromSource(source, wm, "inputs")
                .keyBy(c -> c.scope)
                .window(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                .aggregate(new Sum(), new Row())
                .sinkTo(sink);
        if (paced) {
            env.execute("spendguard-peer");
            return;
        }
        JobClient client = env.executeAsync("spendguard-peer");
        String line = Meter.await(600_000);
        if (line == null) {
            System.err.println("flink: no input counted in time");
            System.exit(1);
        }
        System.out.println(line);
        // The bounded job ends by itself: the last windows close at the end
        // of input and the sink flushes.
        client.getJobExecutionResult().get(); // throws if the job failed
        System.exit(0);
    }
}
