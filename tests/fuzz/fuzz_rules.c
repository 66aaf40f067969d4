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
        for (int i = 0; i < rules->cnt; i++)
                if (rules->rule[i].id[0] == '\0' ||
                    rules->rule[i].has_threshold ==
                        rules->rule[i].has_target_factor)
                        abort(); /* what load validates must hold */
        sg_rules_destroy(rules);
        return 0;
}
