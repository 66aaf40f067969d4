/*
 * A small YAML document tree over libyaml, for the config and the rules file:
 * scalars, mappings and sequences, each node with its line for error messages.
 */
#ifndef SG_YAML_TREE_H
#define SG_YAML_TREE_H

#include <stddef.h>

typedef enum { SG_YAML_SCALAR, SG_YAML_MAP, SG_YAML_SEQ } sg_yaml_type_t;

typedef struct sg_yaml_node {
        sg_yaml_type_t type;
        char *key;                  /* the key of a mapping entry, else NULL */
        char *value;                /* the text of a scalar, else NULL */
        int line;                   /* 1-based */
        struct sg_yaml_node *child; /* first entry of a map or seq */
        struct sg_yaml_node *next;  /* next sibling */
} sg_yaml_node_t;

/* Parse a file or a buffer; NULL and errstr ("file:line: why") on error.
 * An empty document yields an empty map. Free with sg_yaml_free(). */
sg_yaml_node_t *sg_yaml_load_file(const char *path, char *errstr,
                                  size_t errstr_size);
sg_yaml_node_t *sg_yaml_load_string(const char *buf, size_t len, char *errstr,
                                    size_t errstr_size);
void sg_yaml_free(sg_yaml_node_t *node);

/* The entry of a map with this key, or NULL. */
const sg_yaml_node_t *sg_yaml_get(const sg_yaml_node_t *map, const char *key);

#endif
