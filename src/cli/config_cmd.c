/* `sluice config check FILE`: load and validate a config file, print every
 * problem as FILE:line:col: error|warning: message, then a one-line summary. */
#include "cli/cli.h"
#include "config/config.h"
#include "core/core.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice config check FILE\n\n"
                 "Validates a Sluice config file and prints every error and warning as\n"
                 "FILE:line:col: error|warning: message. Environment variables named by\n"
                 "os.environ/NAME must be set, as they would be for `sluice serve`.\n"
                 "Exit status: 0 valid, 1 invalid, 2 usage error.\n");
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

static int check(const char *file)
{
    sl_config *c = NULL;
    sl_config_diags d = {0};
    int rc = sl_config_load_file(file, &c, &d);
    size_t n_err = 0, n_warn = 0;
    char line[1024];
    for (size_t i = 0; i < d.n; i++) {
        sl_config_diag_format(file, &d.items[i], line, sizeof line);
        puts(line);
        if (d.items[i].is_error)
            n_err++;
        else
            n_warn++;
    }
    int status;
    if (rc == 0) {
        printf("ok: %zu model%s in %zu group%s, %zu fallback rule%s, %zu warning%s\n", c->n_backends,
               plural(c->n_backends), c->n_groups, plural(c->n_groups), c->router.n_fallbacks,
               plural(c->router.n_fallbacks), n_warn, plural(n_warn));
        status = 0;
    } else {
        if (n_err == 0)   /* e.g. out of memory: no diag says why */
            printf("%s: error: %s\n", file, sl_strerror(rc));
        printf("%zu error%s, %zu warning%s\n", n_err ? n_err : 1, plural(n_err ? n_err : 1), n_warn,
               plural(n_warn));
        status = 1;
    }
    sl_config_release(c);
    sl_config_diags_free(&d);
    return status;
}

int sl_cmd_config(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        usage(stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "check") && strcmp(argv[2], "--help") && strcmp(argv[2], "-h"))
        return check(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "check")) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
