#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "yaml_tree.h"

/* The recursion limit keeps a hostile file from exhausting the stack. */
#define YAML_MAX_DEPTH 64

typedef struct {
        yaml_parser_t parser;
        const char *name;
        char *errstr;
        size_t errstr_size;
} loader_t;

static void node_free(sg_yaml_node_t *n)
{
        while (n) {
                sg_yaml_node_t *next = n->next;
                node_free(n->child);
                free(n->key);
                free(n->value);
                free(n);
                n = next;
        }
}

void sg_yaml_free(sg_yaml_node_t *node)
{
        node_free(node);
}

static int next_event(loader_t *l, yaml_event_t *ev)
{
        if (yaml_parser_parse(&l->parser, ev))
                return 0;
        /* libyaml notices a problem where the construct that caused it
         * cannot go on, often the next line (a key without ':', a '['
         * never closed); the construct started at the context mark, and
         * that is the line to fix. */
        if (l->parser.context)
                snprintf(l->errstr, l->errstr_size, "%s:%zu: %s (%s)",
                         l->name, l->parser.context_mark.line + 1,
                         l->parser.problem ? l->parser.problem : "parse error",
                         l->parser.context);
        else
                snprintf(l->errstr, l->errstr_size, "%s:%zu: %s", l->name,
                         l->parser.problem_mark.line + 1,
                         l->parser.problem ? l->parser.problem
                                           : "parse error");
        return -1;
}

static sg_yaml_node_t *node_new(sg_yaml_type_t type, int line)
{
        sg_yaml_node_t *n = calloc(1, sizeof(*n));

        if (n) {
                n->type = type;
                n->line = line;
        }
        return n;
}

/* Builds the node whose first event is *ev (consumed). */
static sg_yaml_node_t *load_node(loader_t *l, yaml_event_t *ev, int depth)
{
        sg_yaml_node_t *n = NULL, **tail;
        int line = (int)ev->start_mark.line + 1;

        if (depth > YAML_MAX_DEPTH) {
                snprintf(l->errstr, l->errstr_size,
                         "%s:%d: nested deeper than %d levels", l->name, line,
                         YAML_MAX_DEPTH);
                yaml_event_delete(ev);
                return NULL;
        }
        switch (ev->type) {
        case YAML_SCALAR_EVENT:
                n = node_new(SG_YAML_SCALAR, line);
                if (n)
                        n->value = strndup((const char *)ev->data.scalar.value,
                                           ev->data.scalar.length);
                yaml_event_delete(ev);
                if (!n || !n->value)
                        goto oom;
                return n;
        case YAML_ALIAS_EVENT:
                snprintf(l->errstr, l->errstr_size,
                         "%s:%d: aliases are not supported", l->name, line);
                yaml_event_delete(ev);
                return NULL;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
                int is_map = ev->type == YAML_MAPPING_START_EVENT;
                yaml_event_type_t end =
                    is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
                yaml_event_delete(ev);
                n = node_new(is_map ? SG_YAML_MAP : SG_YAML_SEQ, line);
                if (!n)
                        goto oom;
                tail = &n->child;
                for (;;) {
                        yaml_event_t e;
                        char *key = NULL;
                        sg_yaml_node_t *c;

                        if (next_event(l, &e) == -1)
                                goto fail;
                        if (e.type == end) {
                                yaml_event_delete(&e);
                                return n;
                        }
                        if (is_map) {
                                if (e.type != YAML_SCALAR_EVENT) {
                                        snprintf(l->errstr, l->errstr_size,
                                                 "%s:%zu: mapping keys must "
                                                 "be scalars",
                                                 l->name,
                                                 e.start_mark.line + 1);
                                        yaml_event_delete(&e);
                                        goto fail;
                                }
                                key = strndup((const char *)e.data.scalar.value,
                                              e.data.scalar.length);
                                yaml_event_delete(&e);
                                if (!key)
                                        goto oom;
                                if (next_event(l, &e) == -1) {
                                        free(key);
                                        goto fail;
                                }
                        }
                        c = load_node(l, &e, depth + 1);
                        if (!c) {
                                free(key);
                                goto fail;
                        }
                        c->key = key;
                        *tail = c;
                        tail = &c->next;
                }
        }
        default:
                snprintf(l->errstr, l->errstr_size,
                         "%s:%d: unexpected YAML event", l->name, line);
                yaml_event_delete(ev);
                return NULL;
        }
oom:
        snprintf(l->errstr, l->errstr_size, "%s: out of memory", l->name);
fail:
        node_free(n);
        return NULL;
}

static sg_yaml_node_t *load(loader_t *l)
{
        sg_yaml_node_t *root = NULL;
        yaml_event_t ev;

        /* STREAM-START, then DOCUMENT-START or STREAM-END (empty file). */
        if (next_event(l, &ev) == -1)
                return NULL;
        yaml_event_delete(&ev);
        if (next_event(l, &ev) == -1)
                return NULL;
        if (ev.type == YAML_STREAM_END_EVENT) {
                yaml_event_delete(&ev);
                return node_new(SG_YAML_MAP, 1);
        }
        yaml_event_delete(&ev);
        if (next_event(l, &ev) == -1)
                return NULL;
        root = load_node(l, &ev, 0);
        if (!root)
                return NULL;
        if (root->type == SG_YAML_SCALAR && root->value[0] == '\0') {
                /* A document holding only comments. */
                root->type = SG_YAML_MAP;
                free(root->value);
                root->value = NULL;
        }
        return root;
}

sg_yaml_node_t *sg_yaml_load_string(const char *buf, size_t len, char *errstr,
                                    size_t errstr_size)
{
        loader_t l = {
            .name = "<string>", .errstr = errstr, .errstr_size = errstr_size};
        sg_yaml_node_t *root;

        if (!yaml_parser_initialize(&l.parser)) {
                snprintf(errstr, errstr_size, "yaml: out of memory");
                return NULL;
        }
        yaml_parser_set_input_string(&l.parser, (const unsigned char *)buf,
                                     len);
        root = load(&l);
        yaml_parser_delete(&l.parser);
        return root;
}

sg_yaml_node_t *sg_yaml_load_file(const char *path, char *errstr,
                                  size_t errstr_size)
{
        loader_t l = {
            .name = path, .errstr = errstr, .errstr_size = errstr_size};
        sg_yaml_node_t *root;
        struct stat st;
        FILE *fp = fopen(path, "rb");

        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return NULL;
        }
        /* fopen() opens a directory; reading it is a bare "input error". */
        if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
                fclose(fp);
                snprintf(errstr, errstr_size,
                         "%s: is a directory, not a config file", path);
                return NULL;
        }
        if (!yaml_parser_initialize(&l.parser)) {
                fclose(fp);
                snprintf(errstr, errstr_size, "yaml: out of memory");
                return NULL;
        }
        yaml_parser_set_input_file(&l.parser, fp);
        root = load(&l);
        yaml_parser_delete(&l.parser);
        fclose(fp);
        return root;
}

const sg_yaml_node_t *sg_yaml_get(const sg_yaml_node_t *map, const char *key)
{
        if (!map || map->type != SG_YAML_MAP)
                return NULL;
        for (const sg_yaml_node_t *c = map->child; c; c = c->next)
                if (strcmp(c->key, key) == 0)
                        return c;
        return NULL;
}
