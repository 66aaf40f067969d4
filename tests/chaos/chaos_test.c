/*
 * Chaos: while sg-gen feeds the full stack, a driver SIGKILLs a random stage
 * (ingest, aggregate, rules or sink) at random moments and restarts it at
 * once, restarts redis-server once (with its append-only file) and takes
 * the broker down and up once (with SG_KAFKA=real: SIGKILLs the Kafka
 * broker and restarts it on its log dir). At the end every KPI total equals what the
 * input topics hold, exactly, and no decision id is on ad-decisions twice.
 *
 * CHAOS_KILLS sets the number of kills (default 10: the short version in
 * `make test`; `make chaos` runs 50). CHAOS_SEED fixes the driver's random
 * choices (default: the pid, printed).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"

static const char *const stages[4] = {"sg-ingest", "sg-aggregate", "sg-rules",
                                      "sg-sink"};

static void setup(void)
{
        /* The mock broker keeps about 5 MiB per partition, consumed or
         * not: 32 partitions hold the whole run. */
        const char *broker_args[] = {"--partitions", "32", NULL};

        h_init();
        /* A short consumer session, so that the groups notice a killed
         * member in seconds, not in the default 45. */
        h_config(NULL, "kafka:\n  session.timeout.ms: 6000\n"
                       "  heartbeat.interval.ms: 500\n");
        H.redis_persist = 1;
        /* A real broker keeps what it is given: its 4 default partitions. */
        h_start_infra_args(h_real_kafka() ? NULL : broker_args);
}

TestSuite(chaos, .init = setup, .fini = h_stack_down, .timeout = 1200);

static int env_int(const char *name, int def)
{
        const char *v = getenv(name);

        return v && *v ? atoi(v) : def;
}

Test(chaos, random_kills_redis_restart_and_broker_outage_lose_nothing)
{
        int kills = env_int("CHAOS_KILLS", 10);
        unsigned seed = (unsigned)env_int("CHAOS_SEED", (int)getpid());
        char truth_path[512], dur[16], why[512] = "";
        /* 4,000 events/s; about 1.25 s of run per kill, and at least 30 s. */
        const char *gen_args[] = {"--seed",  "31",       "--duration",
                                  dur,       "--rate",   "4000",
                                  "--truth", truth_path, NULL};
        int redis_at = kills / 5, broker_at = kills / 2, done = 0;
        long long sent, held;
        rd_kafka_message_t **msgs;
        json_t *truth, *counts;
        pid_t pids[4], gen;
        int n;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        /* sg-gen's scenario time runs about 7x the wall clock. */
        snprintf(dur, sizeof(dur), "%d",
                 (kills * 5 / 4 < 30 ? 30 : kills * 5 / 4) * 7);
        for (int s = 0; s < 4; s++)
                pids[s] = h_spawn(stages[s], NULL);
        gen = h_spawn("sg-gen", gen_args);
        fprintf(stderr, "chaos: %d kills, seed %u, logs in %s\n", kills, seed,
                H.dir);
        srand(seed);

        for (; done < kills; done++) {
                int s = rand() % 4;

                usleep((useconds_t)(500 + rand() % 1500) * 1000);
                /* Every stage is still running: none exits by itself. */
                for (int k = 0; k < 4; k++)
                        cr_assert_eq(h_wait(pids[k], 0), -1,
                                     "%s exited by itself after %d kills "
                                     "(logs in %s)",
                                     stages[k], done, H.dir);
                pids[s] = h_kill_restart(pids[s], stages[s]);
                if (done == redis_at)
                        h_redis_restart();
                if (done == broker_at && h_real_kafka()) {
                        /* SIGKILL the real broker and start it again on
                         * its log dir: nothing acknowledged with acks=all
                         * may be lost, so sg-gen keeps sending (its
                         * producer retries until the broker is back). */
                        h_kafka_restart(1000);
                } else if (done == broker_at) {
                        /* The generator holds still meanwhile: the mock
                         * broker loses records acknowledged to a producer
                         * across an outage (docs/known-issues.md), and
                         * sg-gen's records are the ground truth. The stages
                         * are not spared. */
                        kill(gen, SIGSTOP);
                        usleep(1000 * 1000);
                        h_broker_ctl("broker down 1");
                        usleep(3000 * 1000);
                        h_broker_ctl("broker up 1");
                        kill(gen, SIGCONT);
                }
        }
        cr_assert_eq(h_wait(gen, 600000), 0,
                     "sg-gen did not deliver everything (log: %s/sg-gen.log)",
                     H.dir);

        /* Judged against what the input topics hold: the mock broker may
         * lose or duplicate records across the outage (docs/known-issues.md);
         * the difference is reported. */
        truth = h_jsonl_file(truth_path);
        sent = h_truth_sent(truth);
        counts = h_held_events(&held);
        fprintf(stderr,
                "chaos: %d kills survived; the topics hold %lld distinct "
                "events, sg-gen had %lld acknowledged\n",
                done, held, sent);
        /* A real broker loses nothing it acknowledged, duplicates
         * nothing (idempotent producer): the topics hold exactly what
         * sg-gen was told was written. */
        if (h_real_kafka())
                cr_assert_eq(held, sent,
                             "the real broker holds %lld distinct events, "
                             "sg-gen had %lld acknowledged",
                             held, sent);
        cr_assert_gt(held, sent - sent / 100,
                     "the broker lost more than 1%% of what it acknowledged: "
                     "%lld of %lld",
                     held, sent);
        cr_assert(h_kpis_wait_held(counts, 300000, why, sizeof(why)),
                  "after %d kills the KPIs never matched the input topics: %s "
                  "(logs in %s)",
                  done, why, H.dir);
        /* With nothing lost by the broker, every counter of every scope,
         * invalid traffic included, equals sg-gen's ground truth. */
        if (held == sent) {
                json_t *kpis =
                    h_kpis_wait(truth, NULL, 60000, why, sizeof(why));
                cr_assert(kpis, "KPIs differ from the ground truth: %s", why);
                json_decref(kpis);
        }
        json_decref(counts);
        json_decref(truth);

        /* No decision id twice on ad-decisions. */
        {
                char schemas[512], err[256];
                sg_codec_t *codec =
                    sg_codec_new(h_src("schemas", schemas, sizeof(schemas)),
                                 err, sizeof(err));
                json_t *ids = json_object();

                cr_assert_not_null(codec, "%s", err);
                n = h_consume_all("ad-decisions", 0, 10000, &msgs);
                for (int m = 0; m < n; m++) {
                        sg_decision_t d;

                        cr_assert_eq(sg_codec_decode_decision(codec,
                                                              msgs[m]->payload,
                                                              msgs[m]->len, &d),
                                     0);
                        cr_assert_null(json_object_get(ids, d.decision_id),
                                       "decision %s delivered twice",
                                       d.decision_id);
                        json_object_set_new(ids, d.decision_id, json_true());
                }
                fprintf(stderr, "chaos: %d decisions, each id once\n", n);
                h_msgs_free(msgs, n);
                json_decref(ids);
                sg_codec_destroy(codec);
        }
}
