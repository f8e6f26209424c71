/* main.c -- entry point: dispatches to the subcommands of cli.h. */
#include <stdio.h>
#include <string.h>

#include "core/compat.h"
#include "core/log.h"
#include "server/cli.h"

#define FACTLOG_VERSION "0.1.0"

static const char usage[] =
	"factlog " FACTLOG_VERSION " -- an event ledger: Kafka's model in one binary\n"
	"\n"
	"Usage: factlog COMMAND [FLAGS]\n"
	"\n"
	"Commands:\n"
	"  serve     run the broker on a data directory (the main job)\n"
	"  topics    list, create, describe, alter and delete topics in a data directory\n"
	"  append    append lines from standard input to a topic (offline, for scripts and tests)\n"
	"  dump      print the records of a topic (offline)\n"
	"  groups    list consumer groups, or describe one: members, offsets, lag (a Kafka client)\n"
	"  produce   post lines from standard input as CloudEvents to a running server (HTTP)\n"
	"  tail      follow a topic live from a running server (HTTP, Server-Sent Events)\n"
	"  run       run an app file's functions against any Kafka-compatible cluster\n"
	"  deploy    replace a running server's app file without a restart\n"
	"  functions list functions, describe one, show its logs (of a running server)\n"
	"  replay    replay a range of a stream through a function, then optionally hand over to live\n"
	"  version   print the version\n"
	"\n"
	"Run 'factlog COMMAND --help' for a command's flags.\n";

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("factlog %s\n", FACTLOG_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(cmd, "topics") == 0)
		return cmd_topics(argc - 1, argv + 1);
	if (strcmp(cmd, "append") == 0)
		return cmd_append(argc - 1, argv + 1);
	if (strcmp(cmd, "dump") == 0)
		return cmd_dump(argc - 1, argv + 1);
	if (strcmp(cmd, "groups") == 0)
		return cmd_groups(argc - 1, argv + 1);
	if (strcmp(cmd, "produce") == 0)
		return cmd_produce(argc - 1, argv + 1);
	if (strcmp(cmd, "tail") == 0)
		return cmd_tail(argc - 1, argv + 1);
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "deploy") == 0)
		return cmd_deploy(argc - 1, argv + 1);
	if (strcmp(cmd, "functions") == 0)
		return cmd_functions(argc - 1, argv + 1);
	if (strcmp(cmd, "replay") == 0)
		return cmd_replay(argc - 1, argv + 1);
	fprintf(stderr, "factlog: unknown command '%s'\n\n%s", cmd, usage);
	return 2;
}
