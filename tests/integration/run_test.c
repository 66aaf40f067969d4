/*
 * `make run` (tools/run.sh) as a new operator meets it: a process that
 * dies, at start or later, stops the run with that process's own error
 * line; default ports that are taken are replaced by free ones, said so;
 * the way in from another terminal is printed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static void down(void)
{
        h_stop_all(); /* run.sh, by pid: it stops what it started */
}

TestSuite(run, .init = h_init, .fini = down, .timeout = 180);

static char run_dir[300], bin_env[600], run_env[320];

/* Starts tools/run.sh with the built binaries, its run folder in the
 * test's folder, and env (NULL-terminated, up to 4 entries). */
static pid_t start_run(const char *const *env)
{
        char script[512], bin[512];
        const char *e[8] = {bin_env, run_env};
        int n = 2;

        for (; env && *env && n < 7; env++)
                e[n++] = *env;
        e[n] = NULL;
        snprintf(run_dir, sizeof(run_dir), "%s/run", H.dir);
        snprintf(run_env, sizeof(run_env), "RUN_DIR=%s", run_dir);
        h_bin("sg-ctl", bin, sizeof(bin));
        *strrchr(bin, '/') = '\0';
        snprintf(bin_env, sizeof(bin_env), "BIN=%s", bin);
        return h_spawn_env(h_src("tools/run.sh", script, sizeof(script)),
                           NULL, e);
}

/* run.sh's output so far (stdout and stderr, in the harness log). */
static char *run_output(void)
{
        static char buf[1 << 20];
        char path[512];
        size_t n;
        FILE *fp;

        snprintf(path, sizeof(path), "%s/run.sh.log", H.dir);
        buf[0] = '\0';
        fp = fopen(path, "r");
        if (!fp)
                return buf;
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        return buf;
}

/* Polls run.sh's output for text until deadline_ms from now. */
static int output_has(const char *text, int deadline_ms)
{
        long long end = h_now_ms() + deadline_ms;

        do {
                if (strstr(run_output(), text))
                        return 1;
                usleep(100 * 1000);
        } while (h_now_ms() < end);
        return 0;
}

/* The last line of a log file in the run folder (without its newline). */
static void last_line(const char *name, char *out, size_t size)
{
        char path[512], line[4096];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s", run_dir, name);
        out[0] = '\0';
        fp = fopen(path, "r");
        cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
        while (fgets(line, sizeof(line), fp))
                snprintf(out, size, "%.*s", (int)strcspn(line, "\n"), line);
        fclose(fp);
}

Test(run, a_stage_that_cannot_start_stops_the_run_with_its_own_error)
{
        const char *env[] = {"SG_CONFIG=/tmp", NULL};
        pid_t run = start_run(env);

        cr_assert_eq(h_wait(run, 60000), 1, "run.sh did not exit 1:\n%s",
                     run_output());
        cr_assert_not_null(
            strstr(run_output(),
                   "run: ingest exited: sg-ingest: bad config: /tmp: is a "
                   "directory, not a config file\n"),
            "%s", run_output());
        cr_assert_null(strstr(run_output(), "spendguard top"),
                       "the live view was shown:\n%s", run_output());
}

Test(run, a_stage_that_dies_later_stops_the_run_with_its_last_words)
{
        const char *env[] = {"SG_RUN_DURATION=600", NULL};
        char pidfile[400], line[4096], want[4200];
        pid_t run = start_run(env), agg;
        FILE *fp;

        cr_assert(output_has("run: other terminal: SG_REDIS=", 90000),
                  "run.sh never got ready:\n%s", run_output());
        snprintf(pidfile, sizeof(pidfile), "%s/aggregate.pid", run_dir);
        fp = fopen(pidfile, "r");
        cr_assert_not_null(fp);
        cr_assert_eq(fscanf(fp, "%d", &agg), 1);
        fclose(fp);
        cr_assert_eq(kill(agg, SIGKILL), 0);
        cr_assert_eq(h_wait(run, 30000), 1, "run.sh did not exit 1:\n%s",
                     run_output());
        last_line("aggregate.log", line, sizeof(line));
        snprintf(want, sizeof(want), "run: aggregate exited: %s\n", line);
        cr_assert_not_null(strstr(run_output(), want), "want %s in\n%s", want,
                           run_output());
}

Test(run, taken_default_ports_are_replaced_and_said_so)
{
        const char *env[] = {"SG_RUN_DURATION=3",
                             "SG_METRICS_LISTEN=127.0.0.1", NULL};
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(9731),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        pid_t run;

        /* If another program holds 9731 already, it is just as taken. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
                cr_assert_eq(listen(fd, 1), 0);
        run = start_run(env);
        cr_assert_eq(h_wait(run, 120000), 0, "run.sh did not exit 0:\n%s",
                     run_output());
        close(fd);
        cr_assert_not_null(strstr(run_output(), "run: every stage is ready "
                                                "(/readyz)\n"),
                           "%s", run_output());
        cr_assert_not_null(strstr(run_output(), "taken: 9731"), "%s",
                           run_output());
        cr_assert_not_null(strstr(run_output(), "run: status page: http://"),
                           "%s", run_output());
        cr_assert_not_null(strstr(run_output(), "run: scenario finished."),
                           "%s", run_output());
}

/* 1 while pid is a process that has not exited (a zombie has). */
static int alive(pid_t pid)
{
        char path[64], line[256];
        int live = 0;
        FILE *fp;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (!(fp = fopen(path, "r")))
                return 0;
        while (fgets(line, sizeof(line), fp))
                if (strncmp(line, "State:", 6) == 0)
                        live = !strchr(line, 'Z');
        fclose(fp);
        return live;
}

/*
 * Closing the terminal sends SIGHUP: run.sh stops everything it started,
 * as on Ctrl-C. (It used to die at once and leave the broker, Redis and
 * the four stages running on their own, holding the default ports.)
 */
Test(run, closing_the_terminal_stops_every_process_it_started)
{
        static const char *const names[] = {"redis", "broker", "ingest",
                                            "aggregate", "rules", "sink",
                                            "serve", "gen"};
        const char *env[] = {"SG_RUN_DURATION=600", NULL};
        pid_t run = start_run(env), pids[8];
        long long end;
        int left;

        cr_assert(output_has("run: other terminal: SG_REDIS=", 90000),
                  "run.sh never got ready:\n%s", run_output());
        for (int i = 0; i < 8; i++) {
                char path[400];
                FILE *fp;

                snprintf(path, sizeof(path), "%s/%s.pid", run_dir, names[i]);
                fp = fopen(path, "r");
                cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
                cr_assert_eq(fscanf(fp, "%d", &pids[i]), 1);
                fclose(fp);
        }
        cr_assert_eq(kill(run, SIGHUP), 0);
        h_wait(run, 30000);
        end = h_now_ms() + 30000;
        do {
                left = 0;
                for (int i = 0; i < 8; i++)
                        left += alive(pids[i]);
                if (left)
                        usleep(100 * 1000);
        } while (left && h_now_ms() < end);
        for (int i = 0; i < 8; i++) {
                cr_expect(!alive(pids[i]), "%s (pid %d) still runs",
                          names[i], (int)pids[i]);
                if (alive(pids[i]))
                        kill(pids[i], SIGKILL);
        }
        cr_assert_eq(left, 0, "%d processes outlived run.sh:\n%s", left,
                     run_output());
}
