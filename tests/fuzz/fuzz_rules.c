/*
 * The rules loader: any YAML buffer loads into valid rules or is refused
 * with one line naming where.
 */
#include "fuzz_common.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char errstr[512];
        sg_rules_t *rules;

        fuzz_quiet();
        errstr[0] = '\0';
        rules = sg_rules_load_string((const char *)data, size, "fuzz.yaml",
                                     errstr, sizeof(errstr));
        if (!rules) {
                if (errstr[0] == '\0')
                        abort();
                return 0;
        }
        /* What load validates must hold. */
        for (int i = 0; i < rules->cnt; i++) {
                const sg_rule_t *r = &rules->rule[i];

                if (r->id[0] == '\0' || (int)r->cmp < SG_CMP_ABSOLUTE ||
                    r->cmp > SG_CMP_BASELINE || r->for_windows < 1 ||
                    r->threshold != r->threshold)
                        abort();
        }
        sg_rules_destroy(rules);
        return 0;
}
