/* Fuzz driver: arbitrary bytes through the whole config loader (YAML parse,
 * schema validation, diag formatting). Any input must give either a config
 * or diags, never a crash, hang or leak; a failed load must say why. */
#include "config/config.h"
#include "core/core.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int env_set;
    if (!env_set) {
        /* so that os.environ/ references in seeds can resolve */
        setenv("SL_FUZZ_KEY", "fuzz-secret-value-123", 1);
        env_set = 1;
    }
    sl_config *c = NULL;
    sl_config_diags d = {0};
    int rc = sl_config_load_string((const char *)data, size, "fuzz.yaml", &c, &d);
    /* the env value is a secret only when the input does not spell it out
     * itself (then it is just text the fuzzer wrote, e.g. a key name) */
    static const char secret[] = "fuzz-secret-value-123";
    bool check_secret = !memmem(data, size, secret, sizeof secret - 1);
    char line[700];
    for (size_t i = 0; check_secret && i < d.n; i++) {
        sl_config_diag_format("fuzz.yaml", &d.items[i], line, sizeof line);
        /* the resolved secret must never appear in a message */
        if (strstr(line, secret))
            abort();
    }
    if (rc == 0) {
        if (!c || sl_config_diags_errors(&d) != 0)
            abort();
        /* touch every backend so that ASan sees bad pointers */
        size_t total = 0;
        for (size_t i = 0; i < c->n_backends; i++)
            total += strlen(c->backends[i].id) + strlen(c->backends[i].model_name);
        for (size_t i = 0; i < c->router.n_fallbacks; i++)
            for (size_t j = 0; j < c->router.fallbacks[i].n_targets; j++)
                total += strlen(c->router.fallbacks[i].targets[j]);
        (void)total;
    } else if (c || d.n == 0) {
        if (rc != SL_ENOMEM)
            abort();
    }
    sl_config_release(c);
    sl_config_diags_free(&d);
    return 0;
}
