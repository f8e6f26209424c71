/*
 * cli.h -- the factlog command line: one binary, one subcommand per job.
 *
 * Each command is `int cmd_NAME(int argc, char **argv)` with argv[0] the command name; it parses its own
 * flags (getopt_long), prints `--help`, and returns the process exit status (0 ok, 1 failure, 2 usage).
 */
#ifndef FL_SERVER_CLI_H
#define FL_SERVER_CLI_H

#include "core/buf.h"
#include "storage/storage.h"

int cmd_serve(int argc, char **argv);
int cmd_topics(int argc, char **argv);
int cmd_append(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_groups(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_deploy(int argc, char **argv);
int cmd_functions(int argc, char **argv);
int cmd_replay(int argc, char **argv);

/* Shared flags of the commands that open a data directory. */
typedef struct {
	const char *data_dir;
	const char *flush;
	const char *log_level;
} cli_storage_flags_t;

/* Applies the shared flags to storage options; prints the problem and returns 2 on a bad value. */
int cli_storage_opts(const cli_storage_flags_t *f, storage_opts_t *o);
/* Blocks until offset of p is durable; returns OK or the error. */
err_t cli_wait_durable(partition_t *p, int64_t offset);

/* An HTTP request (method NULL: GET, or POST when there is a body; ctype: the body's Content-Type). Returns
 * the status, or 0 on a transport error (printed), with the body in resp (NUL-terminated past its len). */
long cli_http(const char *method, const char *url, const char *ctype, const char *body, size_t len, buf_t *resp);
/* Prints an error answer {"error","message"} (or the raw body) to stderr. */
void cli_print_http_error(long status, const buf_t *b);

#endif
