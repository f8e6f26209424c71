/* cmd_serve.c -- `factlog serve`: open the data directory, run until SIGINT or SIGTERM, shut down cleanly. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/log.h"
#include "http/http.h"
#include "kafka/kafka.h"
#include "server/cli.h"
#include "server/fnhost.h"

static const char serve_usage[] =
	"Usage: factlog serve [--data DIR] [--kafka-listen HOST:PORT] [FLAGS]\n"
	"\n"
	"Runs the ledger on a data directory and serves the Kafka protocol until SIGINT or SIGTERM, then\n"
	"flushes and seals every partition so the next start needs no recovery scan.\n"
	"\n"
	"  --data DIR           data directory, created if missing (default ./data)\n"
	"  --kafka-listen H:P   Kafka protocol address (default 127.0.0.1:9092; port 0 picks one)\n"
	"  --http-listen H:P    HTTP/CloudEvents address (default 127.0.0.1:8080; port 0 picks one)\n"
	"  --max-body-bytes N   largest HTTP request body (default 8388608)\n"
	"  --dedup-window-ms N  a repeated CloudEvent (source, id) within N ms gets its first receipt (600000)\n"
	"  --advertise H:P      address given to clients in Metadata (default: the listen address)\n"
	"  --auto-create-topics create unknown topics when clients ask for them (default off)\n"
	"  --default-partitions N  partitions of auto-created topics (default 1)\n"
	"  --kafka-threads N    event-loop threads (default: one per CPU)\n"
	"  --max-request-bytes N   largest request accepted (default 104857600)\n"
	"  --max-connections N  connections accepted at once (default 10000)\n"
	"  --request-timeout-ms N  close a connection whose request stays incomplete this long (30000)\n"
	"  --group-initial-delay-ms N  a new group's first rebalance waits for more members (default 500)\n"
	"  --flush POLICY       always: an acknowledged append is fsynced (default)\n"
	"                       interval:MS: fsync every MS milliseconds; acks do not wait\n"
	"                       never: leave writeback to the OS\n"
	"  --retention-check-ms N  how often retention runs (default 300000)\n"
	"  --flush-threads N    partitions fsynced in parallel (default 4)\n"
	"  --archive LOCATION   where topics with remote.storage.enable=true copy their sealed segments:\n"
	"                       a directory, or s3://BUCKET[/PREFIX] (default DATA/archive; 'none': off)\n"
	"  --s3-endpoint URL    an S3-compatible endpoint (default https://s3.REGION.amazonaws.com);\n"
	"                       credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n"
	"  --s3-region R        the region to sign for (default us-east-1)\n"
	"  --archive-check-ms N how often sealed segments are looked for (default 10000)\n"
	"  --archive-cache-bytes N  S3: the most bytes of archived segments kept downloaded in\n"
	"                       DATA/archive-cache, least recently used evicted first (default 1073741824)\n"
	"  --app FILE           run the functions of this app file (factlog.yml) against this server;\n"
	"                       `factlog deploy FILE` replaces it later without a restart\n"
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

/* A server the storage's data hooks call, published once it runs. The lock makes unpublishing wait for a
 * call in progress: a flusher (or an archive download thread) that had read the pointer could otherwise
 * call into a server that its stop had just freed. A mutex, not a read lock: the calls are a few atomic
 * loads, and unpublishing must not starve behind a stream of flushes. */
typedef struct {
	pthread_mutex_t mu;
	void *server;
} hook_target_t;

static void hook_publish(hook_target_t *t, void *server)
{
	pthread_mutex_lock(&t->mu);
	t->server = server;
	pthread_mutex_unlock(&t->mu); /* with NULL: no hook is inside the server any more, none will enter */
}

/* The storage's data hooks: wake parked fetches and idle event streams. */
static void notify_data(void *arg)
{
	hook_target_t *t = arg;
	pthread_mutex_lock(&t->mu);
	if (t->server != NULL)
		kafka_server_notify_data(t->server);
	pthread_mutex_unlock(&t->mu);
}

static void notify_http(void *arg)
{
	hook_target_t *t = arg;
	pthread_mutex_lock(&t->mu);
	if (t->server != NULL)
		http_server_notify_data(t->server);
	pthread_mutex_unlock(&t->mu);
}

/* "HOST:PORT" -> host, port (0..65535). Prints the problem and returns nonzero when malformed. */
static int parse_hostport(const char *s, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long p = colon ? strtol(colon + 1, &end, 10) : -1;
	if (colon == NULL || colon == s || (size_t)(colon - s) >= cap || *end != 0 || colon[1] == 0 || p < 0 ||
	    p > 65535) {
		fprintf(stderr, "factlog: expected HOST:PORT, got '%s'\n", s);
		return 1;
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	*port = (int)p;
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },   { "flush", required_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' }, { "retention-check-ms", required_argument, NULL, 'r' },
		{ "kafka-listen", required_argument, NULL, 'k' }, { "advertise", required_argument, NULL, 'a' },
		{ "auto-create-topics", no_argument, NULL, 'A' }, { "default-partitions", required_argument, NULL, 'P' },
		{ "kafka-threads", required_argument, NULL, 'T' }, { "max-request-bytes", required_argument, NULL, 'M' },
		{ "max-connections", required_argument, NULL, 'C' },
		{ "group-initial-delay-ms", required_argument, NULL, 'G' },
		{ "flush-threads", required_argument, NULL, 'F' },
		{ "http-listen", required_argument, NULL, 'H' },
		{ "max-body-bytes", required_argument, NULL, 'B' },
		{ "dedup-window-ms", required_argument, NULL, 'D' },
		{ "request-timeout-ms", required_argument, NULL, 'R' },
		{ "app", required_argument, NULL, 'X' },
		{ "archive", required_argument, NULL, 'Y' },
		{ "s3-endpoint", required_argument, NULL, 'E' },
		{ "s3-region", required_argument, NULL, 'Z' },
		{ "archive-check-ms", required_argument, NULL, 'K' },
		{ "archive-cache-bytes", required_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	cli_storage_flags_t f = { 0 };
	long long retention_ms = 300000;
	int flush_threads = -1; /* -1: storage_opts_default's */
	http_opts_t ho;
	http_opts_default(&ho);
	char http_host[256];
	kafka_opts_t ko;
	kafka_opts_default(&ko);
	char listen_host[256], adv_host[256];
	const char *app_file = NULL;
	const char *archive = NULL, *s3_endpoint = NULL, *s3_region = NULL;
	long long archive_check_ms = 10000, archive_cache_bytes = -1; /* -1: the storage's default */
	int c;
	while ((c = getopt_long(argc, argv, "d:f:l:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 'X': app_file = optarg; break;
		case 'Y': archive = optarg; break;
		case 'E': s3_endpoint = optarg; break;
		case 'Z': s3_region = optarg; break;
		case 'K': archive_check_ms = atoll(optarg); break;
		case 'Q': {
			char *end;
			archive_cache_bytes = strtoll(optarg, &end, 10);
			if (*end != 0 || end == optarg || archive_cache_bytes < 65536) {
				fprintf(stderr, "factlog: --archive-cache-bytes: expected a number of bytes, at least 65536, "
						"got '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'k':
			if (parse_hostport(optarg, listen_host, sizeof listen_host, &ko.listen_port) != 0)
				return 2;
			ko.listen_host = listen_host;
			break;
		case 'a':
			if (parse_hostport(optarg, adv_host, sizeof adv_host, &ko.advertised_port) != 0)
				return 2;
			ko.advertised_host = adv_host;
			break;
		case 'A': ko.auto_create_topics = true; break;
		case 'P': ko.default_partitions = atoi(optarg); break;
		case 'T': ko.threads = atoi(optarg); break;
		case 'M': ko.max_request_bytes = atoi(optarg); break;
		case 'C': ko.max_connections = atoi(optarg); break;
		case 'G': ko.group_initial_delay_ms = atoi(optarg); break;
		case 'F': flush_threads = atoi(optarg); break;
		case 'H':
			if (parse_hostport(optarg, http_host, sizeof http_host, &ho.listen_port) != 0)
				return 2;
			ho.listen_host = http_host;
			break;
		case 'B': ho.max_body_bytes = (size_t)atoll(optarg); break;
		case 'D': ho.dedup_window_ms = atoll(optarg); break;
		case 'R': ko.request_timeout_ms = atoll(optarg); break;
		case 'd': f.data_dir = optarg; break;
		case 'f': f.flush = optarg; break;
		case 'l': f.log_level = optarg; break;
		case 'r': retention_ms = atoll(optarg); break;
		case 'h': fputs(serve_usage, stdout); return 0;
		default: fputs(serve_usage, stderr); return 2;
		}
	}
	if (optind != argc || retention_ms <= 0 || archive_check_ms <= 0 || ko.default_partitions < 1 || ko.default_partitions > 10000 ||
	    ko.threads < 1 || ko.threads > 256 || ko.max_request_bytes < 1024 || ko.max_connections < 1 ||
	    ko.group_initial_delay_ms < 0 || ko.group_initial_delay_ms > 300000 || ko.request_timeout_ms < 100) {
		fputs(serve_usage, stderr);
		return 2;
	}
	storage_opts_t o;
	int rc = cli_storage_opts(&f, &o);
	if (rc != 0)
		return rc;
	o.retention_check_ms = retention_ms;
	char archive_dir[4096];
	if (archive == NULL) {
		snprintf(archive_dir, sizeof archive_dir, "%s/archive", o.data_dir);
		archive = archive_dir;
	}
	o.archive_location = strcmp(archive, "none") == 0 ? NULL : archive;
	o.s3_endpoint = s3_endpoint;
	o.s3_region = s3_region;
	o.archive_check_ms = archive_check_ms;
	if (archive_cache_bytes != -1)
		o.archive_cache_bytes = archive_cache_bytes;
	if (flush_threads != -1 && (flush_threads < 1 || flush_threads > STORAGE_FLUSH_THREADS_MAX)) {
		fputs(serve_usage, stderr);
		return 2;
	}
	if (flush_threads != -1)
		o.flush_threads = flush_threads;

	/* Descriptors: one per connection and per segment; take the hard limit rather than the shell's 1024. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}

	/* Block the stop signals before any thread starts, then wait for them on this thread. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* An invalid app file is reported before anything starts. */
	char aerr[1024];
	app_t *app = NULL;
	if (app_file != NULL && (app = app_load(app_file, aerr, sizeof aerr)) == NULL) {
		fprintf(stderr, "factlog: %s\n", aerr);
		return 1;
	}

	storage_t *st;
	err_t err = storage_open(&o, &st);
	if (err != OK) {
		fprintf(stderr, "factlog: cannot open %s: %s\n", o.data_dir, err_str(err));
		return 1;
	}
	hook_target_t published = { .mu = PTHREAD_MUTEX_INITIALIZER };
	hook_target_t published_http = { .mu = PTHREAD_MUTEX_INITIALIZER };
	storage_add_data_hook(st, notify_data, &published);
	storage_add_data_hook(st, notify_http, &published_http);
	kafka_server_t *ks;
	err = kafka_server_start(st, &ko, &ks);
	if (err != OK) {
		fprintf(stderr, "factlog: cannot serve Kafka on %s:%d: %s\n", ko.listen_host, ko.listen_port,
			err_str(err));
		storage_close(st);
		return 1;
	}
	hook_publish(&published, ks);
	/* Functions reach the ledger through the Kafka listener, as any client would. */
	fn_host_t fh;
	char bootstrap[300], fn_logs[4200];
	snprintf(bootstrap, sizeof bootstrap, "%s:%d",
		 strcmp(ko.listen_host, "0.0.0.0") == 0 || strcmp(ko.listen_host, "::") == 0 ? "127.0.0.1"
											      : ko.listen_host,
		 kafka_server_port(ks));
	snprintf(fn_logs, sizeof fn_logs, "%s/functions", o.data_dir);
	fn_host_init(&fh, bootstrap, fn_logs);
	ho.ext = fn_host_http;
	ho.ext_ctx = &fh;
	http_server_t *hs;
	err = http_server_start(st, &ho, &hs);
	if (err != OK) {
		fprintf(stderr, "factlog: cannot serve HTTP on %s:%d: %s\n", ho.listen_host, ho.listen_port,
			err_str(err));
		hook_publish(&published, NULL);
		kafka_server_stop(ks);
		storage_close(st);
		app_free(app);
		return 1;
	}
	hook_publish(&published_http, hs);
	if (app != NULL) {
		int nf = app->nfunctions;
		err = fn_host_deploy(&fh, app, aerr, sizeof aerr);
		if (err != OK)
			log_error("functions of %s not started: %s", app_file, aerr);
		else
			log_info("running %d function(s) of %s; logs in %s", nf, app_file, fn_logs);
	}
	log_info("factlog serving data directory %s (flush policy %s); stop with Ctrl-C", o.data_dir,
		 f.flush ? f.flush : "always");
	int sig = 0;
	sigwait(&stop, &sig);
	log_info("received signal %d: stopping functions, closing connections, flushing and sealing partitions",
		 sig);
	storage_cancel_archive(st); /* a reader waiting for a hung S3 download must not hold the stops below */
	fn_host_stop(&fh); /* first: its consumers commit through the Kafka listener */
	hook_publish(&published_http, NULL);
	http_server_stop(hs);
	hook_publish(&published, NULL);
	kafka_server_stop(ks);
	storage_close(st);
	log_info("stopped cleanly");
	return 0;
}
