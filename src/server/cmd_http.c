/*
 * cmd_http.c -- `factlog produce` and `factlog tail`: the command line over the HTTP API (libcurl), so
 * they work against a running server from anywhere, like any other HTTP client would.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/compat.h"
#include "server/cli.h"

static const char produce_usage[] =
	"Usage: factlog produce --topic T [--key K] [--type TYPE] [--source SRC] [--json] [--batch N]\n"
	"                       [--url http://127.0.0.1:8080]\n"
	"\n"
	"Posts each line of standard input as one CloudEvent (data = the line; with --json the line is JSON\n"
	"data) in batches of N (default 100) and prints each receipt 'TOPIC PARTITION OFFSET' once durable.\n"
	"Event ids are generated (source + time + sequence), so a rerun posts new events.\n";

static const char tail_usage[] =
	"Usage: factlog tail --topic T [--from earliest|latest] [--partitions P,P] [--url http://127.0.0.1:8080]\n"
	"\n"
	"Follows a topic live (Server-Sent Events) and prints one CloudEvent per line as JSON. Ctrl-C stops.\n";

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
	buf_append(arg, p, size * n);
	return size * n;
}

static void json_escape(buf_t *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char t[8];
		if (c == '"' || c == '\\') {
			t[0] = '\\';
			t[1] = (char)c;
			buf_append(b, t, 2);
		} else if (c < 0x20) {
			int k = snprintf(t, sizeof t, "\\u%04x", c);
			buf_append(b, t, (size_t)k);
		} else {
			buf_put_u8(b, c);
		}
	}
}

static int post_batch(CURL *c, const char *url, buf_t *body, int count)
{
	if (count == 0)
		return 0;
	buf_append(body, "]", 1);
	buf_t resp = { 0 };
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/cloudevents-batch+json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body->data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body->len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	buf_put_u8(&resp, 0);
	int ret = 0;
	if (rc != CURLE_OK) {
		fprintf(stderr, "factlog: %s: %s\n", url, curl_easy_strerror(rc));
		ret = 1;
	} else if (status != 200) {
		fprintf(stderr, "factlog: %s answered %ld: %s\n", url, status, (char *)resp.data);
		ret = 1;
	} else {
		/* [{"topic":"t","partition":0,"offset":5},...] -> one line each */
		const char *p = (const char *)resp.data;
		while ((p = strstr(p, "\"topic\":\"")) != NULL) {
			p += 9;
			const char *e = strchr(p, '"');
			const char *pp = strstr(p, "\"partition\":"), *po = strstr(p, "\"offset\":");
			if (e == NULL || pp == NULL || po == NULL)
				break;
			printf("%.*s %ld %lld\n", (int)(e - p), p, strtol(pp + 12, NULL, 10), strtoll(po + 9, NULL, 10));
		}
		fflush(stdout);
	}
	buf_free(&resp);
	body->len = 0;
	return ret;
}

int cmd_produce(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "topic", required_argument, NULL, 't' },  { "key", required_argument, NULL, 'k' },
		{ "type", required_argument, NULL, 'y' },   { "source", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },         { "batch", required_argument, NULL, 'b' },
		{ "url", required_argument, NULL, 'u' },    { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topic = NULL, *key = NULL, *type = "factlog.line", *source = "/factlog/cli",
		   *base = "http://127.0.0.1:8080";
	bool json = false;
	long batch = 100;
	int c;
	while ((c = getopt_long(argc, argv, "t:k:y:s:jb:u:h", opts, NULL)) != -1) {
		switch (c) {
		case 't': topic = optarg; break;
		case 'k': key = optarg; break;
		case 'y': type = optarg; break;
		case 's': source = optarg; break;
		case 'j': json = true; break;
		case 'b': batch = strtol(optarg, NULL, 10); break;
		case 'u': base = optarg; break;
		case 'h': fputs(produce_usage, stdout); return 0;
		default: fputs(produce_usage, stderr); return 2;
		}
	}
	if (topic == NULL || optind != argc || batch < 1 || batch > 100000) {
		fputs(produce_usage, stderr);
		return 2;
	}
	char url[1024];
	snprintf(url, sizeof url, "%s/v1/topics/%s/events", base, topic);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *cu = curl_easy_init();
	buf_t body = { 0 };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int count = 0, rc = 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long long run = (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
	for (long seq = 0; rc == 0 && (n = getline(&line, &cap, stdin)) >= 0; seq++) {
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = 0;
		buf_append(&body, count == 0 ? "[" : ",", 1);
		char head[512];
		int k = snprintf(head, sizeof head, "{\"specversion\":\"1.0\",\"id\":\"%llx-%ld\",\"source\":\"", run, seq);
		buf_append(&body, head, (size_t)k);
		json_escape(&body, source, strlen(source));
		buf_append(&body, "\",\"type\":\"", 10);
		json_escape(&body, type, strlen(type));
		buf_append(&body, "\"", 1);
		if (key) {
			buf_append(&body, ",\"partitionkey\":\"", 17);
			json_escape(&body, key, strlen(key));
			buf_append(&body, "\"", 1);
		}
		if (json) {
			buf_append(&body, ",\"data\":", 8);
			buf_append(&body, line, (size_t)n);
		} else {
			buf_append(&body, ",\"data\":\"", 9);
			json_escape(&body, line, (size_t)n);
			buf_append(&body, "\"", 1);
		}
		buf_append(&body, "}", 1);
		if (++count == batch) {
			rc = post_batch(cu, url, &body, count);
			count = 0;
		}
	}
	if (rc == 0)
		rc = post_batch(cu, url, &body, count);
	free(line);
	buf_free(&body);
	curl_easy_cleanup(cu);
	curl_global_cleanup();
	return rc;
}

/* SSE: print each "data:" line (one JSON event). */
static size_t on_stream(char *p, size_t size, size_t n, void *arg)
{
	buf_t *b = arg;
	buf_append(b, p, size * n);
	size_t start = 0;
	for (size_t i = 0; i < b->len; i++) {
		if (b->data[i] != '\n')
			continue;
		if (i - start > 6 && memcmp(b->data + start, "data: ", 6) == 0) {
			fwrite(b->data + start + 6, 1, i - start - 6, stdout);
			fputc('\n', stdout);
			fflush(stdout);
		}
		start = i + 1;
	}
	memmove(b->data, b->data + start, b->len - start);
	b->len -= start;
	return size * n;
}

int cmd_tail(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "topic", required_argument, NULL, 't' },      { "from", required_argument, NULL, 'f' },
		{ "partitions", required_argument, NULL, 'p' }, { "url", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },             { NULL, 0, NULL, 0 },
	};
	const char *topic = NULL, *from = "latest", *parts = NULL, *base = "http://127.0.0.1:8080";
	int c;
	while ((c = getopt_long(argc, argv, "t:f:p:u:h", opts, NULL)) != -1) {
		switch (c) {
		case 't': topic = optarg; break;
		case 'f': from = optarg; break;
		case 'p': parts = optarg; break;
		case 'u': base = optarg; break;
		case 'h': fputs(tail_usage, stdout); return 0;
		default: fputs(tail_usage, stderr); return 2;
		}
	}
	if (topic == NULL || optind != argc) {
		fputs(tail_usage, stderr);
		return 2;
	}
	char url[1024];
	snprintf(url, sizeof url, "%s/v1/topics/%s/events?from=%s%s%s", base, topic, from, parts ? "&partitions=" : "",
		 parts ? parts : "");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURL *cu = curl_easy_init();
	buf_t b = { 0 };
	struct curl_slist *h = curl_slist_append(NULL, "Accept: text/event-stream");
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(cu, CURLOPT_FAILONERROR, 1L);
	CURLcode rc = curl_easy_perform(cu);
	if (rc != CURLE_OK)
		fprintf(stderr, "factlog: %s: %s\n", url, curl_easy_strerror(rc));
	curl_slist_free_all(h);
	buf_free(&b);
	curl_easy_cleanup(cu);
	curl_global_cleanup();
	return rc == CURLE_OK ? 0 : 1;
}
