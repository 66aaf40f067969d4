#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

static sg_counter_t counters[SG_METRICS_MAX];
static int counter_cnt;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

sg_counter_t *sg_counter(const char *name)
{
        sg_counter_t *c = NULL;

        pthread_mutex_lock(&lock);
        for (int i = 0; i < counter_cnt; i++) {
                if (strcmp(counters[i].name, name) == 0) {
                        c = &counters[i];
                        break;
                }
        }
        if (!c && counter_cnt < SG_METRICS_MAX) {
                c = &counters[counter_cnt++];
                snprintf(c->name, sizeof(c->name), "%s", name);
        }
        pthread_mutex_unlock(&lock);
        return c;
}

uint64_t sg_counter_value(const char *name)
{
        uint64_t v = 0;

        pthread_mutex_lock(&lock);
        for (int i = 0; i < counter_cnt; i++)
                if (strcmp(counters[i].name, name) == 0)
                        v = __atomic_load_n(&counters[i].value,
                                            __ATOMIC_RELAXED);
        pthread_mutex_unlock(&lock);
        return v;
}

void sg_metrics_log(void)
{
        char line[1800];
        size_t n = 0;

        line[0] = '\0';
        pthread_mutex_lock(&lock);
        for (int i = 0; i < counter_cnt && n < sizeof(line); i++) {
                uint64_t v =
                    __atomic_load_n(&counters[i].value, __ATOMIC_RELAXED);
                char key[112], q[160];
                size_t j = 0;

                if (!v)
                        continue;
                /* logfmt keys cannot hold the label syntax: flatten
                 * name{a="x",b="y"} to name.x.y */
                for (const char *p = counters[i].name;
                     *p && j + 1 < sizeof(key); p++) {
                        if (*p == '{' || *p == ',')
                                key[j++] = '.';
                        else if (*p != '}' && *p != '"' && *p != '=')
                                key[j++] = *p;
                        else if (*p == '=') {
                                /* drop the label name */
                                while (j && key[j - 1] != '.')
                                        j--;
                        }
                }
                key[j] = '\0';
                snprintf(q, sizeof(q), "%s=%llu ", key, (unsigned long long)v);
                n += snprintf(line + n, sizeof(line) - n, "%s", q);
        }
        pthread_mutex_unlock(&lock);
        if (n)
                sg_info("event=stats %s", line);
}
