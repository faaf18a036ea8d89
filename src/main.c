/* sluice: dispatch `sluice <command> ...` to src/cli/. */
#include "cli/cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"serve", sl_cmd_serve, "run the OpenAI-compatible gateway"},
    {"version", sl_cmd_version, "print the version"},
    {"config", sl_cmd_config, "check a config file (config check FILE)"},
    {"bench", sl_cmd_bench, "load-test an OpenAI-compatible endpoint"},
    {"model", sl_cmd_model, "inspect a GGUF model file (model info FILE)"},
    {"run", sl_cmd_run, "generate text with a local GGUF model (run FILE -p PROMPT)"},
    {"train", sl_cmd_train, "train a small model, or make its corpus (train --help)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "\nRun 'sluice <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    /* peers that close sockets must give write errors, not kill the process */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return sl_cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
