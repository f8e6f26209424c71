/* cmd_serve.c -- `factlog serve`: open the data directory, run until SIGINT or SIGTERM, shut down cleanly. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/log.h"
#include "server/cli.h"

static const char serve_usage[] =
	"Usage: factlog serve [--data DIR] [--flush POLICY] [--log-level LEVEL]\n"
	"\n"
	"Runs the ledger on a data directory until SIGINT or SIGTERM, then flushes and seals every\n"
	"partition so the next start needs no recovery scan.\n"
	"\n"
	"  --data DIR           data directory, created if missing (default ./data)\n"
	"  --flush POLICY       always: an acknowledged append is fsynced (default)\n"
	"                       interval:MS: fsync every MS milliseconds; acks do not wait\n"
	"                       never: leave writeback to the OS\n"
	"  --retention-check-ms N  how often retention runs (default 300000)\n"
	"  --log-level LEVEL    debug, info (default), warn, error\n"
	"  -h, --help           this help\n";

int cli_storage_opts(const cli_storage_flags_t *f, storage_opts_t *o)
{
	storage_opts_default(o, f->data_dir ? f->data_dir : "./data");
	if (f->flush != NULL &&
	    storage_parse_flush_policy(f->flush, &o->defaults.flush_policy, &o->defaults.flush_interval_ms) != OK) {
		fprintf(stderr, "factlog: --flush: expected always, never or interval:MS, got '%s'\n", f->flush);
		return 2;
	}
	if (f->log_level != NULL) {
		int lvl = log_level_parse(f->log_level);
		if (lvl < 0) {
			fprintf(stderr, "factlog: --log-level: expected debug, info, warn or error, got '%s'\n",
				f->log_level);
			return 2;
		}
		log_set_level(lvl);
	}
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },   { "flush", required_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' }, { "retention-check-ms", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	cli_storage_flags_t f = { 0 };
	long long retention_ms = 300000;
	int c;
	while ((c = getopt_long(argc, argv, "d:f:l:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': f.data_dir = optarg; break;
		case 'f': f.flush = optarg; break;
		case 'l': f.log_level = optarg; break;
		case 'r': retention_ms = atoll(optarg); break;
		case 'h': fputs(serve_usage, stdout); return 0;
		default: fputs(serve_usage, stderr); return 2;
		}
	}
	if (optind != argc || retention_ms <= 0) {
		fputs(serve_usage, stderr);
		return 2;
	}
	storage_opts_t o;
	int rc = cli_storage_opts(&f, &o);
	if (rc != 0)
		return rc;
	o.retention_check_ms = retention_ms;

	/* Block the stop signals before any thread starts, then wait for them on this thread. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	storage_t *st;
	err_t err = storage_open(&o, &st);
	if (err != OK) {
		fprintf(stderr, "factlog: cannot open %s: %s\n", o.data_dir, err_str(err));
		return 1;
	}
	log_info("factlog serving data directory %s (flush policy %s); stop with Ctrl-C", o.data_dir,
		 f.flush ? f.flush : "always");
	int sig = 0;
	sigwait(&stop, &sig);
	log_info("received signal %d: flushing and sealing partitions", sig);
	storage_close(st);
	log_info("stopped cleanly");
	return 0;
}
