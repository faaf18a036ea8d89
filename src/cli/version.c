#include "cli/cli.h"

#include <stdio.h>

#ifndef SL_VERSION
#define SL_VERSION "0.1.0"
#endif

int sl_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("sluice %s\n", SL_VERSION);
    return 0;
}
