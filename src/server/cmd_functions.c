/*
 * cmd_functions.c -- functions from the command line and over HTTP:
 *   `factlog run --app FILE --bootstrap H:P`   the runtime alone, against any Kafka-compatible cluster;
 *   `factlog deploy FILE`                      replace a running server's app without a restart;
 *   `factlog functions list|describe|logs`     state, lag, invocations, errors, stderr;
 * and the HTTP routes `factlog serve` adds for them (/v1/functions, /v1/functions/NAME/replay, /v1/app), which
 * the last two and `factlog replay` (cmd_replay.c) call.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "server/cli.h"
#include "server/fnhost.h"

/* ---- the HTTP routes of `factlog serve` -------------------------------------------------------------- */

void fn_host_init(fn_host_t *h, const char *bootstrap, const char *log_dir)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->mu, NULL);
	runtime_opts_default(&h->opts);
	snprintf(h->bootstrap, sizeof h->bootstrap, "%s", bootstrap);
	snprintf(h->log_dir, sizeof h->log_dir, "%s", log_dir);
	h->opts.bootstrap = h->bootstrap;
	h->opts.log_dir = h->log_dir;
}

err_t fn_host_deploy(fn_host_t *h, app_t *app, char *err, size_t errcap)
{
	pthread_mutex_lock(&h->mu);
	if (h->stopped) {
		pthread_mutex_unlock(&h->mu);
		app_free(app);
		snprintf(err, errcap, "the server is stopping");
		return ERR_CLOSED;
	}
	err_t rc = h->rt == NULL ? runtime_start(&h->opts, app, &h->rt, err, errcap)
				 : runtime_deploy(h->rt, app, err, errcap);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void fn_host_stop(fn_host_t *h)
{
	pthread_mutex_lock(&h->mu);
	if (h->rt != NULL)
		runtime_stop(h->rt);
	h->rt = NULL;
	h->stopped = true;
	pthread_mutex_unlock(&h->mu);
	/* h->mu stays valid: the HTTP server may still route a request here until it stops. */
}

static json_t *error_json(const char *code, const char *msg)
{
	return json_pack("{s:s,s:s}", "error", code, "message", msg);
}

/* A replay bound from the request body: a string as is, an integer as its digits; NULL when absent or null.
 * false when it is another type. */
static bool bound_text(json_t *v, char *buf, size_t cap, const char **out)
{
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (json_is_string(v)) {
		*out = json_string_value(v);
		return true;
	}
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
		*out = buf;
		return true;
	}
	return false;
}

/* POST /v1/functions/NAME/replay {"from", "to", "then", "stream"}; DELETE cancels; GET shows it. */
static void route_replay(runtime_t *rt, const char *name, const http_ext_req_t *req, http_ext_reply_t *out)
{
	char err[1024] = "";
	json_t *desc = NULL;
	err_t rc;
	if (rt == NULL) {
		out->status = 404;
		out->json = error_json("not_found", "no such function");
		return;
	}
	if (strcmp(req->method, "GET") == 0) {
		json_t *f = runtime_describe_json(rt, name);
		json_t *r = f ? json_object_get(f, "replay") : NULL;
		out->status = r ? 200 : 404;
		out->json = r ? json_incref(r) : error_json("not_found", f ? "no replay yet" : "no such function");
		json_decref(f);
		return;
	}
	if (strcmp(req->method, "DELETE") == 0) {
		rc = runtime_replay_cancel(rt, name, &desc, err, sizeof err);
	} else if (strcmp(req->method, "POST") == 0) {
		json_error_t je;
		json_t *body = json_loadb((const char *)req->body, req->body_len, 0, &je);
		char fb[32], tb[32];
		runtime_replay_req_t rr = { 0 };
		json_t *then = json_object_get(body, "then"), *stream = json_object_get(body, "stream");
		const char *key;
		json_t *v;
		bool ok = json_is_object(body);
		snprintf(err, sizeof err, "the body must be a JSON object {\"from\": ..., \"to\": ..., "
					  "\"then\": \"live\" or null, \"stream\": ...}");
		json_object_foreach(body, key, v)
			ok = ok && (strcmp(key, "from") == 0 || strcmp(key, "to") == 0 || strcmp(key, "then") == 0 ||
				    strcmp(key, "stream") == 0);
		ok = ok && bound_text(json_object_get(body, "from"), fb, sizeof fb, &rr.from) &&
		     bound_text(json_object_get(body, "to"), tb, sizeof tb, &rr.to);
		ok = ok && (then == NULL || json_is_null(then) ||
			    (json_is_string(then) && strcmp(json_string_value(then), "live") == 0));
		ok = ok && (stream == NULL || json_is_null(stream) || json_is_string(stream));
		rr.then_live = json_is_string(then);
		rr.stream = json_string_value(stream);
		if (ok && rr.from == NULL)
			snprintf(err, sizeof err, "from: required");
		rc = ok && rr.from != NULL ? runtime_replay_start(rt, name, &rr, &desc, err, sizeof err) : ERR_INVALID;
		json_decref(body);
	} else {
		out->status = 405;
		out->json = error_json("method_not_allowed", "POST starts a replay, DELETE cancels it, GET shows it");
		return;
	}
	if (rc == OK) {
		out->status = 202;
		out->json = desc;
		return;
	}
	out->status = rc == ERR_NOT_FOUND ? 404 : rc == ERR_EXISTS ? 409 : 400;
	out->json = error_json(rc == ERR_NOT_FOUND ? "not_found" : rc == ERR_EXISTS ? "conflict" : "invalid_request",
			       err);
}

/* One metric family over every function (families stay contiguous, as the text format wants). */
static void metric_family(buf_t *b, json_t *fns, const char *name, const char *type, const char *help,
			  const char *obj, const char *field, const char *label)
{
	char line[512];
	int n;
	if (help != NULL) { /* NULL: more samples of the family just written */
		n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
		buf_append(b, line, (size_t)n);
	}
	size_t i;
	json_t *f;
	json_array_foreach(fns, i, f) {
		json_t *src = obj ? json_object_get(f, obj) : f;
		json_t *v = json_object_get(src, field);
		if (!json_is_integer(v))
			continue;
		n = snprintf(line, sizeof line, "%s{function=\"%s\"%s} %" JSON_INTEGER_FORMAT "\n", name,
			     json_string_value(json_object_get(f, "name")), label ? label : "", json_integer_value(v));
		buf_append(b, line, (size_t)n);
	}
}

/* GET /metrics, the functions' part (the gateway appends it to its own): Prometheus text format. */
static char *functions_metrics(runtime_t *rt)
{
	json_t *list = runtime_list_json(rt), *fns = json_array();
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(list, "functions"), i, f) {
		json_t *d = runtime_describe_json(rt, json_string_value(json_object_get(f, "name")));
		if (d != NULL)
			json_array_append_new(fns, d);
	}
	json_decref(list);
	buf_t b = { 0 };
	metric_family(&b, fns, "factlog_function_invocations_total", "counter", "Batches handed to the function.",
		      NULL, "invocations", NULL);
	metric_family(&b, fns, "factlog_function_errors_total", "counter", "Invocations that failed.", NULL, "errors",
		      NULL);
	static const char *const outcomes[][2] = { { "events_ok", "ok" }, { "filtered", "filtered" },
						   { "dead_lettered", "dead_lettered" }, { "discarded", "discarded" } };
	for (int k = 0; k < 4; k++) {
		char label[64];
		snprintf(label, sizeof label, ",outcome=\"%s\"", outcomes[k][1]);
		metric_family(&b, fns, "factlog_function_events_total", "counter",
			      k == 0 ? "Events by outcome: ok (processed), filtered, dead_lettered, discarded." : NULL,
			      "stats", outcomes[k][0], label);
	}
	metric_family(&b, fns, "factlog_function_retries_total", "counter", "Failed events scheduled again.", "stats",
		      "retries", NULL);
	metric_family(&b, fns, "factlog_function_cold_starts_total", "counter", "Worker processes started.", "stats",
		      "cold_starts", NULL);
	metric_family(&b, fns, "factlog_function_lag", "gauge", "Events not yet done, summed over partitions.", NULL,
		      "lag", NULL);
	metric_family(&b, fns, "factlog_function_workers", "gauge", "Worker processes running.", NULL, "workers",
		      NULL);
	metric_family(&b, fns, "factlog_function_replay_events", "gauge", "Events in the function's latest replay.",
		      "replay", "events_total", NULL);
	metric_family(&b, fns, "factlog_function_replay_events_done", "gauge", "Events that replay has done.",
		      "replay", "events_done", NULL);
	metric_family(&b, fns, "factlog_function_replay_rate", "gauge", "That replay's events per second.", "replay",
		      "rate_per_second", NULL);
	metric_family(&b, fns, "factlog_function_replay_eta_seconds", "gauge", "That replay's estimated time left.",
		      "replay", "eta_seconds", NULL);
	json_decref(fns);
	buf_put_u8(&b, 0);
	return (char *)b.data;
}

void fn_host_http(void *ctx, const http_ext_req_t *req, http_ext_reply_t *out)
{
	fn_host_t *h = ctx;
	const char *p = req->path;
	if (strcmp(p, "/metrics") == 0) { /* called by the gateway's own /metrics */
		pthread_mutex_lock(&h->mu);
		if (h->rt != NULL) {
			out->status = 200;
			out->text = functions_metrics(h->rt);
		}
		pthread_mutex_unlock(&h->mu);
		return;
	}
	if (strcmp(p, "/v1/app") == 0) {
		if (strcmp(req->method, "POST") != 0 && strcmp(req->method, "PUT") != 0) {
			out->status = 405;
			out->json = error_json("method_not_allowed", "POST the app file (YAML) to deploy it");
			return;
		}
		/* A YAML content type: a web page cannot send it without a CORS preflight, so a browser on this
		 * machine cannot be made to deploy commands to a local server. */
		const char *ct = req->content_type;
		if (ct == NULL || (strncmp(ct, "application/yaml", 16) != 0 && strncmp(ct, "application/x-yaml", 18) != 0 &&
				   strncmp(ct, "text/yaml", 9) != 0)) {
			out->status = 415;
			out->json = error_json("unsupported_media_type",
					       "POST the app file with Content-Type: application/yaml");
			return;
		}
		const char *path = http_ext_arg(req, "path");
		char err[1024];
		app_t *app = app_parse((const char *)req->body, req->body_len, path ? path : "factlog.yml", err,
				       sizeof err);
		if (app == NULL) {
			out->status = 400;
			out->json = error_json("invalid_app", err);
			return;
		}
		int nf = app->nfunctions, ns = app->nstreams;
		if (fn_host_deploy(h, app, err, sizeof err) != OK) {
			out->status = 502;
			out->json = error_json("deploy_failed", err);
			return;
		}
		out->status = 200;
		out->json = json_pack("{s:s,s:i,s:i}", "status", "deployed", "functions", nf, "streams", ns);
		return;
	}
	if (strncmp(p, "/v1/functions", 13) != 0 || (p[13] != 0 && p[13] != '/'))
		return;
	const char *rs = p[13] ? strchr(p + 14, '/') : NULL;
	if (rs != NULL && strcmp(rs, "/replay") == 0 && (size_t)(rs - (p + 14)) < 128 && rs > p + 14) {
		char fname[128];
		memcpy(fname, p + 14, (size_t)(rs - (p + 14)));
		fname[rs - (p + 14)] = 0;
		pthread_mutex_lock(&h->mu);
		route_replay(h->rt, fname, req, out);
		pthread_mutex_unlock(&h->mu);
		return;
	}
	if (strcmp(req->method, "GET") != 0) {
		out->status = 405;
		out->json = error_json("method_not_allowed", "use GET");
		return;
	}
	pthread_mutex_lock(&h->mu);
	runtime_t *rt = h->rt;
	char name[128] = "";
	const char *rest = p[13] ? p + 14 : "";
	const char *slash = strchr(rest, '/');
	size_t nl = slash ? (size_t)(slash - rest) : strlen(rest);
	if (nl < sizeof name) {
		memcpy(name, rest, nl);
		name[nl] = 0;
	}
	if (rest[0] == 0) {
		out->status = 200;
		out->json = rt ? runtime_list_json(rt) : json_pack("{s:[]}", "functions");
	} else if (slash == NULL) {
		out->json = rt ? runtime_describe_json(rt, name) : NULL;
		out->status = out->json ? 200 : 404;
		if (out->json == NULL)
			out->json = error_json("not_found", "no such function");
	} else if (strcmp(slash, "/logs") == 0) {
		const char *ls = http_ext_arg(req, "lines");
		int lines = ls ? atoi(ls) : 200;
		out->text = rt ? runtime_logs(rt, name, lines < 1 ? 1 : lines > 100000 ? 100000 : lines) : NULL;
		out->status = out->text ? 200 : 404;
		if (out->text == NULL)
			out->json = error_json("not_found", "no such function");
	} else {
		out->status = 404;
		out->json = error_json("not_found", "no such route (see docs/functions.md)");
	}
	pthread_mutex_unlock(&h->mu);
}

/* ---- factlog run --------------------------------------------------------------------------------------- */

static const char run_usage[] =
	"Usage: factlog run --app FILE --bootstrap HOST:PORT[,HOST:PORT...] [--log-dir DIR] [--log-level L]\n"
	"\n"
	"Runs the functions of an app file against any Kafka-compatible cluster (factlog, Apache Kafka,\n"
	"Redpanda...) until SIGINT or SIGTERM. Each function's log is DIR/NAME.log (default ./functions).\n";

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "app", required_argument, NULL, 'a' },     { "bootstrap", required_argument, NULL, 'b' },
		{ "log-dir", required_argument, NULL, 'L' }, { "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 },
	};
	const char *file = NULL, *bootstrap = NULL, *log_dir = "./functions";
	int c;
	while ((c = getopt_long(argc, argv, "a:b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': file = optarg; break;
		case 'b': bootstrap = optarg; break;
		case 'L': log_dir = optarg; break;
		case 'l': {
			int lvl = log_level_parse(optarg);
			if (lvl < 0) {
				fprintf(stderr, "factlog: --log-level: expected debug, info, warn or error\n");
				return 2;
			}
			log_set_level(lvl);
			break;
		}
		case 'h': fputs(run_usage, stdout); return 0;
		default: fputs(run_usage, stderr); return 2;
		}
	}
	if (file == NULL || bootstrap == NULL || optind != argc) {
		fputs(run_usage, stderr);
		return 2;
	}
	char err[1024];
	app_t *app = app_load(file, err, sizeof err);
	if (app == NULL) {
		fprintf(stderr, "factlog: %s\n", err);
		return 1;
	}
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fn_host_t h;
	fn_host_init(&h, bootstrap, log_dir);
	int nf = app->nfunctions;
	if (fn_host_deploy(&h, app, err, sizeof err) != OK) {
		fprintf(stderr, "factlog: %s\n", err);
		fn_host_stop(&h);
		return 1;
	}
	log_info("running %d function(s) of %s against %s; logs in %s; stop with Ctrl-C", nf, file, bootstrap,
		 log_dir);
	int sig = 0;
	sigwait(&stop, &sig);
	log_info("received signal %d: finishing invocations in flight and committing", sig);
	fn_host_stop(&h);
	log_info("stopped cleanly");
	return 0;
}

/* ---- HTTP clients: deploy, functions ------------------------------------------------------------------ */

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
	buf_append(arg, p, size * n);
	return size * n;
}

long cli_http(const char *method, const char *url, const char *ctype, const char *body, size_t len, buf_t *resp)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *cu = curl_easy_init();
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT, 60L);
	struct curl_slist *hd = NULL;
	if (body != NULL) {
		char h[200];
		snprintf(h, sizeof h, "Content-Type: %s", ctype);
		hd = curl_slist_append(hd, h);
		curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	if (method != NULL)
		curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, method);
	CURLcode rc = curl_easy_perform(cu);
	long status = 0;
	if (rc != CURLE_OK)
		fprintf(stderr, "factlog: %s: %s\n", url, curl_easy_strerror(rc));
	else
		curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hd);
	curl_easy_cleanup(cu);
	buf_append(resp, "", 1);
	resp->len--;
	return status;
}

static long http_call(const char *url, const char *body, size_t len, buf_t *resp)
{
	return cli_http(NULL, url, "application/yaml", body, len, resp);
}

void cli_print_http_error(long status, const buf_t *b)
{
	json_t *j = json_loadb((const char *)b->data, b->len, 0, NULL);
	const char *m = json_string_value(json_object_get(j, "message"));
	fprintf(stderr, "factlog: HTTP %ld: %s\n", status, m ? m : b->len ? (const char *)b->data : "");
	json_decref(j);
}

static const char deploy_usage[] =
	"Usage: factlog deploy FILE [--url http://127.0.0.1:8080]\n"
	"\n"
	"Validates an app file and replaces the running server's app with it, without a restart: changed\n"
	"functions finish their invocations in flight, commit and restart; unchanged ones keep running.\n";

int cmd_deploy(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *base = "http://127.0.0.1:8080";
	int c;
	while ((c = getopt_long(argc, argv, "u:h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': base = optarg; break;
		case 'h': fputs(deploy_usage, stdout); return 0;
		default: fputs(deploy_usage, stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		fputs(deploy_usage, stderr);
		return 2;
	}
	const char *file = argv[optind];
	char err[1024];
	app_t *app = app_load(file, err, sizeof err); /* validate here: the error names the line */
	if (app == NULL) {
		fprintf(stderr, "factlog: %s\n", err);
		return 1;
	}
	app_free(app);
	FILE *f = fopen(file, "rb");
	buf_t body = { 0 }, resp = { 0 };
	char chunk[65536];
	size_t n;
	while (f != NULL && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&body, chunk, n);
	if (f != NULL)
		fclose(f);
	char abs[PATH_MAX];
	if (realpath(file, abs) == NULL)
		snprintf(abs, sizeof abs, "%s", file);
	CURL *esc = curl_easy_init();
	char *q = curl_easy_escape(esc, abs, 0);
	char url[PATH_MAX * 3 + 256];
	snprintf(url, sizeof url, "%s/v1/app?path=%s", base, q);
	curl_free(q);
	curl_easy_cleanup(esc);
	long status = http_call(url, (const char *)body.data, body.len, &resp);
	int rc = 0;
	if (status == 200) {
		printf("deployed %s\n", file);
	} else {
		if (status != 0)
			cli_print_http_error(status, &resp);
		rc = 1;
	}
	buf_free(&body);
	buf_free(&resp);
	return rc;
}

static const char functions_usage[] =
	"Usage: factlog functions list|describe NAME|logs NAME [--lines N] [--url http://127.0.0.1:8080]\n"
	"\n"
	"  list       each function's state, workers, lag, invocations and errors\n"
	"  describe   one function in detail (JSON): triggers, partitions, positions, counters, latency\n"
	"  logs       the last N lines (default 200) of its workers' stderr and the runtime's notes\n";

static void print_list(json_t *j)
{
	printf("%-24s %-10s %8s %10s %12s %8s\n", "NAME", "STATE", "WORKERS", "LAG", "INVOCATIONS", "ERRORS");
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(j, "functions"), i, f) {
		printf("%-24s %-10s %8lld %10lld %12lld %8lld\n", json_string_value(json_object_get(f, "name")),
		       json_string_value(json_object_get(f, "state")),
		       (long long)json_integer_value(json_object_get(f, "workers")),
		       (long long)json_integer_value(json_object_get(f, "lag")),
		       (long long)json_integer_value(json_object_get(f, "invocations")),
		       (long long)json_integer_value(json_object_get(f, "errors")));
	}
}

int cmd_functions(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "lines", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *base = "http://127.0.0.1:8080";
	long lines = 200;
	int c;
	while ((c = getopt_long(argc, argv, "u:n:h", opts, NULL)) != -1) {
		switch (c) {
		case 'u': base = optarg; break;
		case 'n': lines = strtol(optarg, NULL, 10); break;
		case 'h': fputs(functions_usage, stdout); return 0;
		default: fputs(functions_usage, stderr); return 2;
		}
	}
	const char *sub = optind < argc ? argv[optind] : NULL;
	const char *name = optind + 1 < argc ? argv[optind + 1] : NULL;
	bool list = sub != NULL && strcmp(sub, "list") == 0 && name == NULL;
	bool one = sub != NULL && (strcmp(sub, "describe") == 0 || strcmp(sub, "logs") == 0) && name != NULL &&
		   optind + 2 == argc;
	if (!list && !one) {
		fputs(functions_usage, stderr);
		return 2;
	}
	char url[2048];
	if (list)
		snprintf(url, sizeof url, "%s/v1/functions", base);
	else if (strcmp(sub, "describe") == 0)
		snprintf(url, sizeof url, "%s/v1/functions/%s", base, name);
	else
		snprintf(url, sizeof url, "%s/v1/functions/%s/logs?lines=%ld", base, name, lines);
	buf_t resp = { 0 };
	long status = http_call(url, NULL, 0, &resp);
	int rc = 0;
	if (status != 200) {
		if (status != 0)
			cli_print_http_error(status, &resp);
		rc = 1;
	} else if (strcmp(sub, "logs") == 0) {
		fwrite(resp.data, 1, resp.len, stdout);
	} else {
		json_t *j = json_loadb((const char *)resp.data, resp.len, 0, NULL);
		if (list) {
			print_list(j);
		} else {
			char *s = json_dumps(j, JSON_INDENT(2));
			puts(s ? s : "");
			free(s);
		}
		json_decref(j);
	}
	buf_free(&resp);
	return rc;
}
