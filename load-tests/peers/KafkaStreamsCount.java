/*
 * The peer baseline of kafka-throughput.ts --peer: Kafka Streams' stateful count, the workload whose published
 * figure (16.5–20.5k records/s per instance) issue 16 cites, run here on the same broker, topics and records as
 * Kairos' catch-up, so that both are measured in one run.
 *
 * One sub-topology: every input topic → (optionally) each value parsed as JSON with Jackson → groupByKey →
 * count() into an in-memory key-value store with its changelog topic (Kafka Streams' default store is RocksDB;
 * its JNI library is not on this machine, and the in-memory store is the faster of the two) → the counts to an
 * output topic. At-least-once, Kafka Streams' defaults otherwise (record cache 10 MiB, one stream thread), except
 * the commit interval (Kairos' catch-up commits every 500 ms; Kafka Streams' default is 30 s).
 *
 * Configured by the environment kafka-throughput.ts sets: KAIROS_PEER_BROKERS, KAIROS_PEER_GROUP
 * (application.id), KAIROS_PEER_TOPICS (comma-separated), KAIROS_PEER_OUTPUT, KAIROS_PEER_STATE_DIR, and
 * optionally KAIROS_PEER_THREADS (1), KAIROS_PEER_COMMIT_MS (500), KAIROS_PEER_PARSE (1: parse every value).
 * Prints "RUNNING" on stdout once every task is running (the harness measures from then).
 *
 * Built and run outside this repository against a Kafka 4.0 distribution's jars, e.g.
 *   javac -cp '<kafka>/libs/*' -d <out> load-tests/peers/KafkaStreamsCount.java
 *   --peer "java -cp '<out>:<kafka>/libs/*' KafkaStreamsCount"
 * (CI does not build it: it needs the Kafka jars, which this repository does not carry.)
 */
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

public final class KafkaStreamsCount {
  private static String env(String name, String fallback) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      if (fallback == null) throw new IllegalArgumentException(name + " is not set");
      return fallback;
    }
    return v;
  }

  public static void main(String[] args) throws Exception {
    List<String> topics = Arrays.asList(env("KAIROS_PEER_TOPICS", null).split(","));
    boolean parse = env("KAIROS_PEER_PARSE", "0").equals("1");
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, env("KAIROS_PEER_GROUP", null));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("KAIROS_PEER_BROKERS", null));
    p.put(StreamsConfig.STATE_DIR_CONFIG, env("KAIROS_PEER_STATE_DIR", null));
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(env("KAIROS_PEER_THREADS", "1")));
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.parseInt(env("KAIROS_PEER_COMMIT_MS", "500")));
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    ObjectMapper mapper = new ObjectMapper();
    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, String> in = builder.stream(topics, Consumed.with(Serdes.String(), Serdes.String()));
    if (parse) {
      // What a JSON serde does: the value as a tree (kept as its field count, so nothing is optimised away).
      in = in.mapValues(v -> {
        try {
          return v == null ? null : Integer.toString(mapper.readTree(v).size());
        } catch (Exception e) {
          return "bad";
        }
      });
    }
    in.groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
        .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts")).withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
        .toStream()
        .to(env("KAIROS_PEER_OUTPUT", null), Produced.with(Serdes.String(), Serdes.Long()));

    KafkaStreams streams = new KafkaStreams(builder.build(), p);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((now, before) -> {
      System.out.println("STATE " + before + " -> " + now);
      if (now == KafkaStreams.State.RUNNING) System.out.println("RUNNING");
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) stopped.countDown();
      System.out.flush();
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(20));
      stopped.countDown();
    }));
    streams.start();
    stopped.await();
  }
}
