/*
 * cli: the `sluice <command>` entry points. Each parses its own arguments and
 * calls the libraries; none holds logic of its own beyond that.
 * Each returns the process exit status (0 success, 1 failure, 2 usage error).
 */
#ifndef SL_CLI_H
#define SL_CLI_H

int sl_cmd_version(int argc, char **argv);
int sl_cmd_serve(int argc, char **argv);
int sl_cmd_config(int argc, char **argv);   /* config check FILE */
int sl_cmd_bench(int argc, char **argv);
int sl_cmd_model(int argc, char **argv);
int sl_cmd_run(int argc, char **argv);     /* run FILE -p PROMPT: local generation */
int sl_cmd_train(int argc, char **argv);   /* train --corpus FILE --out FILE: train a small model */

#endif
