/*
 * cmd_replay.c -- `factlog replay NAME --from X [--to Y] [--then live]`: starts a replay on a running server
 * (POST /v1/functions/NAME/replay) and follows it (GET /v1/functions/NAME, its "replay" object) until it ends:
 * a progress bar redrawn in place on a terminal, a plain line about every second otherwise.
 * Exit status: 0 done; 1 failed, cancelled, or the server went away; 2 usage.
 * Ctrl-C stops following only: the replay goes on (`factlog replay NAME --cancel` cancels it).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/clock.h"
#include "server/cli.h"

static const char replay_usage[] =
	"Usage: factlog replay NAME --from X [--to Y] [--then live] [--stream S] [--detach] [--url URL]\n"
	"       factlog replay NAME --cancel [--url URL]\n"
	"\n"
	"Replays a range of a stream's history through function NAME (its filters, ordering, retries and dead\n"
	"letters), without moving its live position, and shows the progress until it ends.\n"
	"  --from X, --to Y  earliest, latest, an offset (every partition), an RFC 3339 time\n"
	"                    (2026-01-01T00:00:00Z) or @epoch-ms; --to is exclusive, default: the end of\n"
	"                    each partition when the replay starts (the boundary)\n"
	"  --then live       stop the function's live trigger first, and continue it at the boundary after\n"
	"  --stream S        the trigger to replay, when the function has several\n"
	"  --detach          start it and print its description; do not follow it\n"
	"  --cancel          cancel the running replay (starting the same replay again resumes it)\n"
	"  --url URL         the server (default http://127.0.0.1:8080)\n";

static bool state_final(const char *s)
{
	return strcmp(s, "done") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

static void fmt_duration(int64_t s, char *out, size_t cap)
{
	if (s >= 3600)
		snprintf(out, cap, "%lld:%02lld:%02lld", (long long)(s / 3600), (long long)(s / 60 % 60),
			 (long long)(s % 60));
	else
		snprintf(out, cap, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
}

/* One progress report: redrawn in place on a terminal, a line otherwise. */
static void show(const char *name, json_t *r, bool tty)
{
	const char *state = json_string_value(json_object_get(r, "state"));
	long long total = json_integer_value(json_object_get(r, "events_total"));
	long long done = json_integer_value(json_object_get(r, "events_done"));
	double rate = json_number_value(json_object_get(r, "rate_per_second"));
	json_t *etaj = json_object_get(r, "eta_seconds");
	double pct = total > 0 ? 100.0 * (double)done / (double)total : state_final(state) ? 100.0 : 0.0;
	char eta[32] = "?";
	if (json_is_integer(etaj))
		fmt_duration(json_integer_value(etaj), eta, sizeof eta);
	if (!tty) {
		printf("replay %s: %s %lld/%lld events (%.1f%%), %.0f/s, ETA %s\n", name, state, done, total, pct, rate,
		       eta);
		fflush(stdout);
		return;
	}
	char bar[31];
	int fill = (int)(pct * 30.0 / 100.0);
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[30] = 0;
	printf("\r\033[K%s [%s] %5.1f%%  %lld/%lld events  %.0f/s  ETA %s  %s", name, bar, pct, done, total, rate,
	       eta, strcmp(state, "running") == 0 ? "" : state);
	fflush(stdout);
}

/* The function's current replay, or NULL (status: the HTTP status, 0 on a transport error). */
static json_t *fetch(const char *base, const char *name, long *status)
{
	char url[2048];
	snprintf(url, sizeof url, "%s/v1/functions/%s/replay", base, name);
	buf_t resp = { 0 };
	*status = cli_http(NULL, url, NULL, NULL, 0, &resp);
	json_t *j = *status == 200 ? json_loadb((const char *)resp.data, resp.len, 0, NULL) : NULL;
	buf_free(&resp);
	return j;
}

/* Follows replay id until it ends; returns the exit status. */
static int follow(const char *base, const char *name, const char *id)
{
	bool tty = isatty(STDOUT_FILENO) == 1;
	int misses = 0;
	int64_t last_line = -1; /* off a terminal: a progress line a second at most (-1: none yet) */
	for (;;) {
		long status;
		json_t *r = fetch(base, name, &status);
		if (r == NULL) {
			if (++misses <= 20) { /* a server restarting, or a slow answer: for about 10 s */
				nanosleep(&(struct timespec){ .tv_nsec = 500000000 }, NULL);
				continue;
			}
			fprintf(stderr, "%sfactlog: lost track of the replay (HTTP %ld); it goes on, and a server that "
					"restarts resumes it (factlog functions describe %s shows it)\n",
				tty ? "\n" : "", status, name);
			return 1;
		}
		misses = 0;
		const char *rid = json_string_value(json_object_get(r, "id"));
		const char *state = json_string_value(json_object_get(r, "state"));
		if (rid == NULL || state == NULL || strcmp(rid, id) != 0) {
			json_decref(r);
			fprintf(stderr, "%sfactlog: the replay is gone (the function left the app, or another replay "
					"took its place)\n", tty ? "\n" : "");
			return 1;
		}
		int64_t now_ms = clock_mono_ns(clock_system()) / 1000000;
		if (tty || state_final(state) || last_line < 0 || now_ms - last_line >= 1000) {
			show(name, r, tty);
			last_line = now_ms;
		}
		if (state_final(state)) {
			int rc = strcmp(state, "done") == 0 ? 0 : 1;
			if (tty)
				putchar('\n');
			if (rc == 0)
				printf("replay of %s done: %lld events%s\n", name,
				       (long long)json_integer_value(json_object_get(r, "events_done")),
				       json_is_string(json_object_get(r, "then")) ? "; it continues live at the boundary"
										  : "");
			else
				fprintf(stderr, "factlog: replay of %s %s%s%s\n", name, state,
					json_is_string(json_object_get(r, "error")) ? ": " : "",
					json_is_string(json_object_get(r, "error"))
						? json_string_value(json_object_get(r, "error"))
						: "");
			json_decref(r);
			return rc;
		}
		json_decref(r);
		/* Polled often so the end is seen when it comes (a once-a-second poll rounded a short replay up). */
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
}

int cmd_replay(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' }, { "to", required_argument, NULL, 't' },
		{ "then", required_argument, NULL, 'T' }, { "stream", required_argument, NULL, 's' },
		{ "url", required_argument, NULL, 'u' },  { "detach", no_argument, NULL, 'd' },
		{ "cancel", no_argument, NULL, 'c' },     { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *base = "http://127.0.0.1:8080", *from = NULL, *to = NULL, *then = NULL, *stream = NULL;
	bool detach = false, cancel = false;
	int c;
	while ((c = getopt_long(argc, argv, "f:t:u:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 't': to = optarg; break;
		case 'T': then = optarg; break;
		case 's': stream = optarg; break;
		case 'u': base = optarg; break;
		case 'd': detach = true; break;
		case 'c': cancel = true; break;
		case 'h': fputs(replay_usage, stdout); return 0;
		default: fputs(replay_usage, stderr); return 2;
		}
	}
	if (optind + 1 != argc || (!cancel && from == NULL) || (then != NULL && strcmp(then, "live") != 0) ||
	    strchr(argv[optind], '/') != NULL) {
		fputs(replay_usage, stderr);
		return 2;
	}
	const char *name = argv[optind];
	char url[2048];
	snprintf(url, sizeof url, "%s/v1/functions/%s/replay", base, name);
	char *body = NULL;
	if (!cancel) {
		json_t *b = json_pack("{s:s,s:s?,s:s?,s:s?}", "from", from, "to", to, "then", then, "stream", stream);
		body = json_dumps(b, JSON_COMPACT);
		json_decref(b);
	}
	buf_t resp = { 0 };
	long status = cli_http(cancel ? "DELETE" : "POST", url, "application/json", body, body ? strlen(body) : 0,
			       &resp);
	free(body);
	if (status != 202) {
		if (status != 0)
			cli_print_http_error(status, &resp);
		buf_free(&resp);
		return 1;
	}
	json_t *d = json_loadb((const char *)resp.data, resp.len, 0, NULL);
	buf_free(&resp);
	if (cancel || detach) {
		char *s = json_dumps(d, JSON_INDENT(2));
		puts(s ? s : "");
		free(s);
		json_decref(d);
		return 0;
	}
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(d, "id")) ? json_string_value(json_object_get(d, "id")) : "");
	json_decref(d);
	return follow(base, name, id);
}
