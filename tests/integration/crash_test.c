/*
 * Exactly once under crashes: while sg-gen feeds the stack, sg-ingest and
 * sg-aggregate are killed with SIGKILL at random moments, at least 20 times,
 * and restarted each time. At the end every KPI total equals the
 * generator's ground truth exactly: nothing lost, nothing counted twice.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define KILLS 20

/*
 * The shipped config with absolute paths, and a short consumer session so
 * that the group notices a killed member in seconds, not in the default 45.
 */
static void crash_config(void)
{
        static const char *const rel[][2] = {
            {"schemas_dir: ../schemas", "schemas_dir: %s/schemas"},
            {"file: rules.yaml", "file: %s/config/rules.yaml"},
            {"bot_ua_file: bot_ua.txt", "bot_ua_file: %s/config/bot_ua.txt"},
            {"dc_cidr_file: dc_cidr.txt",
             "dc_cidr_file: %s/config/dc_cidr.txt"},
        };
        char src[512], path[512], line[1024];
        FILE *in, *out;

        h_src("", src, sizeof(src));
        src[strlen(src) - 1] = '\0'; /* the trailing '/' */
        in = fopen(h_src("config/spendguard.yaml", path, sizeof(path)), "r");
        cr_assert_not_null(in);
        snprintf(path, sizeof(path), "%s/crash.yaml", H.dir);
        out = fopen(path, "w");
        cr_assert_not_null(out);
        while (fgets(line, sizeof(line), in)) {
                int done = 0;

                for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
                        char *at = strstr(line, rel[i][0]);
                        if (!at)
                                continue;
                        fprintf(out, "%.*s", (int)(at - line), line);
                        fprintf(out, rel[i][1], src);
                        fputc('\n', out);
                        done = 1;
                }
                if (!done)
                        fputs(line, out);
        }
        fputs("kafka:\n  session.timeout.ms: 6000\n"
              "  heartbeat.interval.ms: 500\n",
              out);
        fclose(in);
        fclose(out);
        setenv("SG_CONFIG", path, 1);
}

static void setup(void)
{
        h_init();
        crash_config();
        h_start_infra();
}

TestSuite(crash, .init = setup, .fini = h_stack_down, .timeout = 600);

/* SIGKILL, reap, start again. */
static pid_t crash_restart(pid_t pid, const char *name)
{
        int status;

        kill(pid, SIGKILL);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == pid)
                        H.procs[i].pid = 0;
        return h_spawn(name, NULL);
}

Test(crash, sigkilled_ingest_and_aggregate_count_every_event_exactly_once)
{
        char truth_path[512], why[512] = "";
        /* About 230,000 events sent over about 60 s. */
        const char *gen_args[] = {"--seed",  "21",       "--duration",
                                  "400",     "--rate",   "4000",
                                  "--truth", truth_path, NULL};
        pid_t ingest, aggregate, gen;
        json_t *truth, *kpis;
        int kills = 0, gen_rc = -1;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        ingest = h_spawn("sg-ingest", NULL);
        aggregate = h_spawn("sg-aggregate", NULL);
        h_spawn("sg-rules", NULL);
        h_spawn("sg-sink", NULL);
        gen = h_spawn("sg-gen", gen_args);

        srand((unsigned)getpid());
        /* 20 kills at random moments 0.5 to 3 s apart: all within the
         * minute sg-gen is sending. */
        for (; kills < KILLS; kills++) {
                usleep((useconds_t)(500 + rand() % 2500) * 1000);
                if (rand() % 2)
                        ingest = crash_restart(ingest, "sg-ingest");
                else
                        aggregate = crash_restart(aggregate, "sg-aggregate");
        }
        gen_rc = h_wait(gen, 300000);
        cr_assert_eq(gen_rc, 0, "sg-gen failed (log: %s/sg-gen.log)", H.dir);

        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 300000, why, sizeof(why));
        cr_assert(kpis,
                  "after %d SIGKILLs the KPIs never matched the truth: %s "
                  "(logs in %s)",
                  kills, why, H.dir);
        json_decref(kpis);
        json_decref(truth);
}
