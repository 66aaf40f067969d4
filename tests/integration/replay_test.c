/*
 * Replaying the real TalkingData click sample through the whole stack gives
 * per-channel click and conversion totals in `sg-ctl kpis` equal to the
 * counts taken directly from the CSV.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define CPC     100000
#define REVENUE 2000000

static void setup(void)
{
        /* 100,000 events: more partitions keep every partition well under
         * the mock broker's ~5 MiB retention. */
        const char *broker_args[] = {"--partitions", "8", NULL};

        h_init();
        h_start_infra_args(broker_args);
        h_start_stages();
}

TestSuite(replay, .init = setup, .fini = h_stack_down, .timeout = 300);

/* Per channel id: clicks and attributed rows, straight from the CSV. */
static json_t *truth_from_csv(const char *path, long *rows)
{
        FILE *fp = fopen(path, "r");
        static long clicks[1024], convs[1024];
        json_t *arr = json_array();
        char line[512];

        cr_assert_not_null(fp, "%s", path);
        memset(clicks, 0, sizeof(clicks));
        memset(convs, 0, sizeof(convs));
        *rows = 0;
        cr_assert_not_null(fgets(line, sizeof(line), fp)); /* header */
        while (fgets(line, sizeof(line), fp)) {
                unsigned ip, app, device, os, channel;
                char *last = strrchr(line, ',');

                cr_assert_eq(sscanf(line, "%u,%u,%u,%u,%u,", &ip, &app, &device,
                                    &os, &channel),
                             5, "row %ld: %s", *rows + 1, line);
                cr_assert_lt(channel, 1024);
                clicks[channel]++;
                convs[channel] += last && last[1] == '1';
                (*rows)++;
        }
        fclose(fp);
        for (int c = 0; c < 1024; c++) {
                char name[32];
                json_t *o;

                if (!clicks[c])
                        continue;
                snprintf(name, sizeof(name), "td-%d", c);
                o = json_pack("{s:s, s:n, s:i, s:i, s:i, s:i, s:i, s:i, s:i, "
                              "s:i}",
                              "channel", name, "campaign_id", "impressions", 0,
                              "clicks", (json_int_t)clicks[c], "conversions",
                              (json_int_t)convs[c], "spend_micros",
                              (json_int_t)clicks[c] * CPC, "revenue_micros",
                              (json_int_t)convs[c] * REVENUE, "invalid_clicks",
                              0, "invalid_impressions", 0,
                              "invalid_spend_micros", 0);
                json_array_append_new(arr, o);
        }
        return arr;
}

Test(replay, talkingdata_sample_counts_match_the_csv)
{
        char csv[512], out[256], why[512] = "";
        const char *args[] = {"--rebase", "--speed", "1000", csv, NULL, NULL};
        json_t *truth, *kpis;
        long rows, channels = 0, convs = 0;
        size_t i;
        json_t *row;

        h_src("data/talkingdata_train_sample.csv", csv, sizeof(csv));
        truth = truth_from_csv(csv, &rows);
        /* The facts data/README.md states about the sample. */
        cr_assert_eq(rows, 100000);
        cr_assert_eq(json_array_size(truth), 161);
        json_array_foreach(truth, i, row) convs +=
            json_integer_value(json_object_get(row, "conversions"));
        cr_assert_eq(convs, 227);

        cr_assert_eq(h_run("sg-replay", args, out, sizeof(out)), 0,
                     "sg-replay failed (log: %s/sg-replay.log)", H.dir);
        cr_assert_str_eq(out, "clicks=100000 conversions=227 malformed=0 "
                              "failed=0\n");

        kpis = h_kpis_wait(truth, NULL, 180000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the CSV: %s (logs in %s)", why,
                  H.dir);
        json_array_foreach(kpis, i, row) channels +=
            json_is_null(json_object_get(row, "campaign_id"));
        cr_assert_eq(channels, 161, "channel rows: want 161, got %ld",
                     channels);
        json_decref(kpis);
        json_decref(truth);
}
