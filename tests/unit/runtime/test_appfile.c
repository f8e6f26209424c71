/* test_appfile.c -- the app file parser: a full example with every field, the defaults, durations, sizes
 * and start times, and one exact message (FILE:LINE:COL: path: problem) per class of error. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/appfile.h"

static app_t *parse_ok(const char *yaml)
{
	char err[512] = "";
	app_t *app = app_parse(yaml, strlen(yaml), "app.yml", err, sizeof err);
	if (app == NULL)
		fail_msg("unexpected error: %s", err);
	return app;
}

static void expect_error(const char *yaml, const char *want)
{
	char err[512] = "";
	app_t *app = app_parse(yaml, strlen(yaml), "app.yml", err, sizeof err);
	if (app != NULL) {
		app_free(app);
		fail_msg("parsed, but expected: %s", want);
	}
	assert_string_equal(err, want);
}

/* The header's example, with every field set. */
static const char full_example[] =
	"app: shop\n"
	"streams:\n"
	"  clicks: { partitions: 8, retention: 7d }\n"
	"  orders:\n"
	"    retention_bytes: 64MiB\n"
	"functions:\n"
	"  shelf:\n"
	"    run: ./shelf.py            # any executable\n"
	"    env: { DB: shelf.db, WORKERS: 2, QUOTED: \"a b\" }\n"
	"    timeout: 45s\n"
	"    scale: { min: 1, max: 6, idle: 2m }\n"
	"    triggers:\n"
	"      - stream: clicks\n"
	"        batch_size: 250\n"
	"        batch_window: 20ms\n"
	"        start: earliest\n"
	"        ordering: partition\n"
	"        concurrency: 16\n"
	"        filter: { type: [click], data: { price: [ { numeric: [\">\", 10] } ] } }\n"
	"        retry: { attempts: 5, base: 200ms, max: 1m }\n"
	"        max_age: 1h\n"
	"        on_failure: clicks-dlq\n"
	"  hook:\n"
	"    http: https://example.com/hook\n"
	"    triggers:\n"
	"      - stream: clicks\n"
	"      - stream: orders\n"
	"        group: billing\n"
	"        start: 2026-01-01T00:00:00Z\n"
	"        ordering: none\n";

static void test_full_example(void **state)
{
	(void)state;
	app_t *app = parse_ok(full_example);
	assert_string_equal(app->path, "app.yml");
	assert_non_null(app->dir);
	assert_int_equal(app->nstreams, 2);
	assert_string_equal(app->streams[0].name, "clicks");
	assert_int_equal(app->streams[0].partitions, 8);
	assert_int_equal(app->streams[0].retention_ms, 7LL * 86400000);
	assert_int_equal(app->streams[0].retention_bytes, -1);
	assert_int_equal(app->streams[0].line, 3);
	assert_string_equal(app->streams[1].name, "orders");
	assert_int_equal(app->streams[1].partitions, 1);
	assert_int_equal(app->streams[1].retention_ms, -1);
	assert_int_equal(app->streams[1].retention_bytes, 64LL << 20);
	assert_int_equal(app->streams[1].line, 4);

	assert_int_equal(app->nfunctions, 2);
	const fn_def_t *fn = app_function(app, "shelf");
	assert_ptr_equal(fn, &app->functions[0]);
	assert_string_equal(fn->name, "shelf");
	assert_int_equal(fn->line, 7);
	assert_string_equal(fn->run, "./shelf.py");
	assert_null(fn->http);
	assert_int_equal(fn->nenv, 3);
	assert_string_equal(fn->env[0], "DB=shelf.db");
	assert_string_equal(fn->env[1], "WORKERS=2");
	assert_string_equal(fn->env[2], "QUOTED=a b");
	assert_int_equal(fn->timeout_ms, 45000);
	assert_int_equal(fn->min_workers, 1);
	assert_int_equal(fn->max_workers, 6);
	assert_int_equal(fn->idle_ms, 120000);
	assert_int_equal(fn->ntriggers, 1);
	const fn_trigger_t *t = &fn->triggers[0];
	assert_string_equal(t->stream, "clicks");
	assert_string_equal(t->group, "shelf"); /* one trigger: the function's name */
	assert_int_equal(t->batch_size, 250);
	assert_int_equal(t->batch_window_ms, 20);
	assert_int_equal(t->start, FN_START_EARLIEST);
	assert_int_equal(t->ordering, FN_ORDER_PARTITION);
	assert_int_equal(t->concurrency, 16);
	assert_non_null(t->filter_json);
	char *dump = json_dumps(t->filter_json, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(dump, "{\"data\":{\"price\":[{\"numeric\":[\">\",10]}]},\"type\":[\"click\"]}");
	free(dump);
	assert_int_equal(t->retry_attempts, 5);
	assert_int_equal(t->retry_base_ms, 200);
	assert_int_equal(t->retry_max_ms, 60000);
	assert_int_equal(t->max_age_ms, 3600000);
	assert_string_equal(t->on_failure, "clicks-dlq");
	assert_int_equal(t->line, 13);
	/* Checked last: it fails only while filter.c is a placeholder. */
	assert_non_null(t->filter);

	fn = app_function(app, "hook");
	assert_non_null(fn);
	assert_null(fn->run);
	assert_string_equal(fn->http, "https://example.com/hook");
	assert_int_equal(fn->ntriggers, 2);
	assert_string_equal(fn->triggers[0].group, "hook.clicks"); /* several triggers: NAME.STREAM */
	assert_string_equal(fn->triggers[1].group, "billing");
	assert_int_equal(fn->triggers[1].start, FN_START_TIME);
	assert_int_equal(fn->triggers[1].start_time_ms, 1767225600000LL);
	assert_int_equal(fn->triggers[1].ordering, FN_ORDER_NONE);
	assert_null(app_function(app, "nope"));
	app_free(app);
}

static void test_defaults(void **state)
{
	(void)state;
	app_t *app = parse_ok("streams:\n"
			      "  a:\n"
			      "  b: ~\n"
			      "  c: {}\n"
			      "functions:\n"
			      "  f:\n"
			      "    run: x\n"
			      "    triggers:\n"
			      "      - stream: a\n");
	assert_int_equal(app->nstreams, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(app->streams[i].partitions, 1);
		assert_int_equal(app->streams[i].retention_ms, -1);
		assert_int_equal(app->streams[i].retention_bytes, -1);
	}
	const fn_def_t *fn = app_function(app, "f");
	assert_non_null(fn);
	assert_int_equal(fn->nenv, 0);
	assert_int_equal(fn->timeout_ms, 30000);
	assert_int_equal(fn->min_workers, 0);
	assert_int_equal(fn->max_workers, 4);
	assert_int_equal(fn->idle_ms, 60000);
	const fn_trigger_t *t = &fn->triggers[0];
	assert_string_equal(t->group, "f");
	assert_int_equal(t->batch_size, 100);
	assert_int_equal(t->batch_window_ms, 0);
	assert_int_equal(t->start, FN_START_LATEST);
	assert_int_equal(t->ordering, FN_ORDER_KEY);
	assert_int_equal(t->concurrency, 1);
	assert_null(t->filter_json);
	assert_null(t->filter);
	assert_int_equal(t->retry_attempts, 3);
	assert_int_equal(t->retry_base_ms, 100);
	assert_int_equal(t->retry_max_ms, 10000);
	assert_int_equal(t->max_age_ms, 0);
	assert_null(t->on_failure);
	assert_string_equal(fn_ordering_name(t->ordering), "key");
	assert_string_equal(fn_ordering_name(FN_ORDER_PARTITION), "partition");
	assert_string_equal(fn_ordering_name(FN_ORDER_NONE), "none");
	app_free(app);
}

static void test_empty_and_memory(void **state)
{
	(void)state;
	const char *empties[] = { "", "# only a comment\n", "~\n", "---\n", "streams:\nfunctions: {}\n" };
	for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
		app_t *app = parse_ok(empties[i]);
		assert_int_equal(app->nstreams, 0);
		assert_int_equal(app->nfunctions, 0);
		app_free(app);
	}
	char err[256];
	app_t *app = app_parse("app: x\n", 7, NULL, err, sizeof err);
	assert_non_null(app);
	assert_string_equal(app->path, "<memory>");
	assert_string_equal(app->dir, ".");
	app_free(app);
	app_free(NULL);
	/* Without a filename, errors name "<memory>". */
	assert_null(app_parse("- 1\n", 4, NULL, err, sizeof err));
	assert_string_equal(err, "<memory>:1:1: expected a mapping");
	/* The length is respected: the text need not end with a NUL. */
	app = app_parse("app: xy: z", 6, "app.yml", err, sizeof err);
	assert_non_null(app);
	app_free(app);
}

/* A stream with one field, to read durations and sizes through the parser. */
static int64_t stream_field(const char *field, const char *value, char *err, size_t errcap)
{
	char yaml[256];
	snprintf(yaml, sizeof yaml, "streams:\n  s:\n    %s: %s\n", field, value);
	app_t *app = app_parse(yaml, strlen(yaml), "app.yml", err, errcap);
	if (app == NULL)
		return INT64_MIN;
	int64_t v = strcmp(field, "retention") == 0 ? app->streams[0].retention_ms : app->streams[0].retention_bytes;
	app_free(app);
	return v;
}

static void test_durations(void **state)
{
	(void)state;
	char err[256];
	static const struct {
		const char *text;
		int64_t ms;
	} ok[] = {
		{ "1", 1 },           { "250", 250 },        { "250ms", 250 },     { "5s", 5000 },
		{ "2m", 120000 },     { "1h", 3600000 },     { "7d", 604800000 },  { "\"90s\"", 90000 },
		{ "'1500'", 1500 },   { "365d", 31536000000 }, { "0001s", 1000 },
	};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
		assert_int_equal(stream_field("retention", ok[i].text, err, sizeof err), ok[i].ms);
	static const char *const bad[] = { "5 s", "5sec", "1.5s", "-5s", "s", "5S", "ms", "5ms5", "0x10", "+5", "true",
					   "''", "[1]", "~" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_int_equal(stream_field("retention", bad[i], err, sizeof err), INT64_MIN);
		assert_string_equal(err, "app.yml:3:16: streams.s.retention: expected a duration: milliseconds, or a "
					 "number with a unit (ms, s, m, h, d)");
	}
	/* Zero is outside retention's range; overflow is out of range, not malformed. */
	assert_int_equal(stream_field("retention", "0s", err, sizeof err), INT64_MIN);
	assert_string_equal(err, "app.yml:3:16: streams.s.retention: out of range: expected at least 1ms");
	assert_int_equal(stream_field("retention", "9999999999999999999d", err, sizeof err), INT64_MIN);
	assert_string_equal(err, "app.yml:3:16: streams.s.retention: out of range: expected at least 1ms");
	assert_int_equal(stream_field("retention", "106751991168d", err, sizeof err), INT64_MIN);
	assert_int_equal(stream_field("retention", "9223372036854775807", err, sizeof err), INT64_MAX);
}

static void test_sizes(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(stream_field("retention_bytes", "1", err, sizeof err), 1);
	assert_int_equal(stream_field("retention_bytes", "1048576", err, sizeof err), 1048576);
	assert_int_equal(stream_field("retention_bytes", "512KiB", err, sizeof err), 512 * 1024);
	assert_int_equal(stream_field("retention_bytes", "64MiB", err, sizeof err), 64LL << 20);
	assert_int_equal(stream_field("retention_bytes", "1GiB", err, sizeof err), 1LL << 30);
	assert_int_equal(stream_field("retention_bytes", "100GiB", err, sizeof err), 100LL << 30);
	static const char *const bad[] = { "1KB", "1kib", "1 MiB", "1.5GiB", "GiB", "1TiB", "-1", "1M" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		assert_int_equal(stream_field("retention_bytes", bad[i], err, sizeof err), INT64_MIN);
		assert_string_equal(err, "app.yml:3:22: streams.s.retention_bytes: expected a size: bytes, or a number "
					 "with a unit (KiB, MiB, GiB)");
	}
	assert_int_equal(stream_field("retention_bytes", "0", err, sizeof err), INT64_MIN);
	assert_string_equal(err, "app.yml:3:22: streams.s.retention_bytes: out of range: expected at least 1");
	assert_int_equal(stream_field("retention_bytes", "9000000000GiB", err, sizeof err), INT64_MIN);
	assert_string_equal(err, "app.yml:3:22: streams.s.retention_bytes: out of range: expected at least 1");
}

/* A function with one trigger on stream s, whose fields can be appended. */
#define FN "functions:\n  f:\n    run: x\n    triggers:\n      - stream: s\n"

/* One trigger with `start: value`; returns its start time, or -2 for latest, -3 for earliest, -1 on error. */
static int64_t start_of(const char *value, char *err, size_t errcap)
{
	char yaml[256];
	snprintf(yaml, sizeof yaml, FN "        start: %s\n", value);
	app_t *app = app_parse(yaml, strlen(yaml), "app.yml", err, errcap);
	if (app == NULL)
		return -1;
	const fn_trigger_t *t = &app->functions[0].triggers[0];
	int64_t v = t->start == FN_START_LATEST ? -2 : t->start == FN_START_EARLIEST ? -3 : t->start_time_ms;
	app_free(app);
	return v;
}

static void test_start(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(start_of("latest", err, sizeof err), -2);
	assert_int_equal(start_of("earliest", err, sizeof err), -3);
	assert_int_equal(start_of("0", err, sizeof err), 0);
	assert_int_equal(start_of("1767225600000", err, sizeof err), 1767225600000LL);
	assert_int_equal(start_of("2026-01-01T00:00:00Z", err, sizeof err), 1767225600000LL);
	assert_int_equal(start_of("\"2026-01-01T00:00:00Z\"", err, sizeof err), 1767225600000LL);
	assert_int_equal(start_of("2026-01-01t00:00:00z", err, sizeof err), 1767225600000LL);
	assert_int_equal(start_of("2026-01-01 00:00:00Z", err, sizeof err), 1767225600000LL);
	assert_int_equal(start_of("2026-01-01T00:00:00.123+01:00", err, sizeof err), 1767222000123LL);
	assert_int_equal(start_of("2024-02-29T12:34:56.789-05:30", err, sizeof err), 1709229896789LL);
	assert_int_equal(start_of("2024-02-29T12:34:56.789999999-05:30", err, sizeof err), 1709229896789LL);
	assert_int_equal(start_of("2000-03-01T00:00:00+00:00", err, sizeof err), 951868800000LL);
	assert_int_equal(start_of("2026-01-01T00:00:00.5Z", err, sizeof err), 1767225600500LL);
	assert_int_equal(start_of("1970-01-01T00:00:00Z", err, sizeof err), 0);
	static const char *const bad[] = {
		"2026-01-01T00:00:00",     /* no offset */
		"2026-01-01",              /* no time */
		"2026-13-01T00:00:00Z",    /* month */
		"2026-04-31T00:00:00Z",    /* day */
		"2023-02-29T00:00:00Z",    /* not a leap year */
		"1900-02-29T00:00:00Z",    /* not a leap year either */
		"2026-01-01T24:00:00Z",    /* hour */
		"2026-01-01T00:60:00Z",    /* minute */
		"2026-01-01T00:00:00.Z",   /* empty fraction */
		"2026-01-01T00:00:00+1:00", /* short offset */
		"2026-01-01T00:00:00+24:00",
		"1969-12-31T23:59:59Z",    /* before the epoch */
		"2026-1-01T00:00:00Z",
		"-1",
		"Latest",
		"now",
		"~",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (start_of(bad[i], err, sizeof err) != -1)
			fail_msg("accepted start: %s", bad[i]);
		assert_string_equal(err, "app.yml:6:16: functions.f.triggers[0].start: expected earliest, latest, an "
					 "RFC 3339 time or epoch milliseconds");
	}
}

static void test_filter_types(void **state)
{
	(void)state;
	app_t *app = parse_ok("functions:\n"
			      "  f:\n"
			      "    run: x\n"
			      "    triggers:\n"
			      "      - stream: s\n"
			      "        filter:\n"
			      "          a: [1, -2, +3, 1.5, 2e3, \"4\", '5', true, false, null, ~, \"true\", yes,\n"
			      "              .inf]\n"
			      "          b: [ { exists: true } ]\n"
			      "          c: [ { prefix: \"\" } ]\n");
	const fn_trigger_t *t = &app->functions[0].triggers[0];
	char *dump = json_dumps(t->filter_json, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
	assert_string_equal(dump, "{\"a\":[1,-2,3,1.5,2000.0,\"4\",\"5\",true,false,null,null,\"true\",\"yes\","
				  "\".inf\"],\"b\":[{\"exists\":true}],\"c\":[{\"prefix\":\"\"}]}");
	free(dump);
	/* Checked last: it fails only while filter.c is a placeholder. */
	assert_non_null(t->filter);
	app_free(app);
}

/* Every class of error, with its exact message. */

static void test_errors_yaml(void **state)
{
	(void)state;
	expect_error("streams:\n  clicks: {\n", "app.yml:3:1: did not find expected node content (while parsing a flow "
						 "node at 3:1)");
	expect_error("a: b\n c: d\n", "app.yml:2:3: mapping values are not allowed in this context");
	expect_error("functions:\n  f:\n    run: x\n   triggers: 1\n",
		     "app.yml:4:4: did not find expected key (while parsing a block mapping at 2:3)");
	expect_error("app: \"\\q\"\n", "app.yml:1:7: found unknown escape character (while parsing a quoted scalar at "
				       "1:6)");
	expect_error("app: ok\napp2: \x01\n", "app.yml:2:7: control characters are not allowed");
	expect_error("app: \xff\n", "app.yml:1:6: invalid leading UTF-8 octet");
	expect_error("streams: &s {}\nfunctions: *s\n", "app.yml:2:12: aliases (*s) are not supported");
	expect_error("app: a\n---\napp: b\n", "app.yml:2:1: only one YAML document is allowed");
	expect_error("- streams\n", "app.yml:1:1: expected a mapping");
	char deep[256];
	snprintf(deep, sizeof deep, "app: %.70s%.70s\n",
		 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
	expect_error(deep, "app.yml:1:69: nested deeper than 64 levels");
}

static void test_errors_structure(void **state)
{
	(void)state;
	expect_error("streams: {}\nfunction: {}\n",
		     "app.yml:2:1: function: unknown field (expected app, streams, functions)");
	expect_error("streams:\n  clicks: {}\n  clicks: {}\n", "app.yml:3:3: streams: duplicate key \"clicks\"");
	expect_error("streams: {}\nstreams: {}\n", "app.yml:2:1: duplicate key \"streams\"");
	expect_error("streams: [a, b]\n", "app.yml:1:10: streams: expected a mapping");
	expect_error("streams:\n  ? [a]\n  : 1\n", "app.yml:2:5: streams: expected a string key");
	expect_error("app: [x]\n", "app.yml:1:6: app: expected a string");
	expect_error("app: ''\n", "app.yml:1:6: app: expected a non-empty string");
	expect_error("streams:\n  clicks: 3\n", "app.yml:2:11: streams.clicks: expected a mapping");
	expect_error("streams:\n  clicks: { partition: 3 }\n",
		     "app.yml:2:13: streams.clicks.partition: unknown field (expected partitions, retention, "
		     "retention_bytes)");
	expect_error("streams:\n  bad name: {}\n",
		     "app.yml:2:3: streams: invalid topic name \"bad name\" (1 to 249 of A-Z a-z 0-9 . _ -)");
	expect_error("streams:\n  ..: {}\n",
		     "app.yml:2:3: streams: invalid topic name \"..\" (1 to 249 of A-Z a-z 0-9 . _ -)");
	expect_error("streams:\n  s: { partitions: 0 }\n",
		     "app.yml:2:20: streams.s.partitions: out of range: expected 1 to 10000");
	expect_error("streams:\n  s: { partitions: 10001 }\n",
		     "app.yml:2:20: streams.s.partitions: out of range: expected 1 to 10000");
	expect_error("streams:\n  s: { partitions: -1 }\n",
		     "app.yml:2:20: streams.s.partitions: out of range: expected 1 to 10000");
	expect_error("streams:\n  s: { partitions: 99999999999999999999 }\n",
		     "app.yml:2:20: streams.s.partitions: out of range: expected 1 to 10000");
	expect_error("streams:\n  s: { partitions: eight }\n",
		     "app.yml:2:20: streams.s.partitions: expected an integer");
	expect_error("streams:\n  s: { partitions: 1.0 }\n", "app.yml:2:20: streams.s.partitions: expected an integer");
	expect_error("streams:\n  s: { partitions: }\n", "app.yml:2:20: streams.s.partitions: expected an integer");
}

static void test_errors_function(void **state)
{
	(void)state;
	expect_error("functions:\n  a.b:\n    run: x\n",
		     "app.yml:2:3: functions: invalid function name \"a.b\" (1 to 64 of A-Z a-z 0-9 _ -)");
	expect_error("functions:\n  f:\n    triggers: [ { stream: s } ]\n",
		     "app.yml:3:5: functions.f: missing run or http (exactly one is required)");
	expect_error("functions:\n  f:\n    run: x\n    http: http://h/\n    triggers: [ { stream: s } ]\n",
		     "app.yml:4:11: functions.f.http: cannot be used together with run (exactly one of run or http)");
	expect_error("functions:\n  f:\n    http: ftp://h/\n", "app.yml:3:11: functions.f.http: expected an http:// or "
							       "https:// URL");
	expect_error("functions:\n  f:\n    run: \"\"\n", "app.yml:3:10: functions.f.run: expected a non-empty string");
	expect_error("functions:\n  f:\n    run: \"a\\0b\"\n",
		     "app.yml:3:10: functions.f.run: contains a NUL character");
	expect_error("functions:\n  f:\n    run: x\n", "app.yml:3:5: functions.f: missing field \"triggers\"");
	expect_error("functions:\n  f:\n    run: x\n    triggers: []\n",
		     "app.yml:4:15: functions.f.triggers: expected a non-empty sequence of triggers");
	expect_error("functions:\n  f:\n    run: x\n    triggers: { stream: s }\n",
		     "app.yml:4:15: functions.f.triggers: expected a non-empty sequence of triggers");
	expect_error("functions:\n  f:\n    run: x\n    trigger: { stream: s }\n",
		     "app.yml:4:5: functions.f.trigger: unknown field (expected run, http, env, timeout, scale, "
		     "triggers)");
	expect_error(FN "    env: { 1X: y }\n",
		     "app.yml:6:12: functions.f.env: invalid variable name \"1X\" (a letter or _, then letters, "
		     "digits or _)");
	expect_error(FN "    env: { A: y, A: z }\n", "app.yml:6:18: functions.f.env: duplicate key \"A\"");
	expect_error(FN "    env: { A: [y] }\n", "app.yml:6:15: functions.f.env.A: expected a string");
	expect_error(FN "    env: { A: }\n", "app.yml:6:15: functions.f.env.A: expected a string");
	expect_error(FN "    env: [A=1]\n", "app.yml:6:10: functions.f.env: expected a mapping");
	expect_error(FN "    timeout: 0\n", "app.yml:6:14: functions.f.timeout: out of range: expected 1ms to 15m");
	expect_error(FN "    timeout: 16m\n", "app.yml:6:14: functions.f.timeout: out of range: expected 1ms to 15m");
	expect_error(FN "    scale: { min: 5, max: 2 }\n",
		     "app.yml:6:27: functions.f.scale.max: must be at least min (5)");
	expect_error(FN "    scale: { max: 0 }\n",
		     "app.yml:6:19: functions.f.scale.max: out of range: expected 1 to 1000");
	expect_error(FN "    scale: { idle: 2d }\n",
		     "app.yml:6:20: functions.f.scale.idle: out of range: expected 0ms to 1d");
	expect_error(FN "    scale: { maximum: 2 }\n",
		     "app.yml:6:14: functions.f.scale.maximum: unknown field (expected min, max, idle)");
}

static void test_errors_trigger(void **state)
{
	(void)state;
	expect_error(FN "        bach_size: 10\n",
		     "app.yml:6:9: functions.f.triggers[0].bach_size: unknown field (expected stream, group, "
		     "batch_size, batch_window, start, ordering, concurrency, filter, retry, max_age, on_failure)");
	expect_error("functions:\n  f:\n    run: x\n    triggers:\n      - group: g\n",
		     "app.yml:5:9: functions.f.triggers[0]: missing field \"stream\"");
	expect_error("functions:\n  f:\n    run: x\n    triggers:\n      - stream: a\n      - stream: \"a b\"\n",
		     "app.yml:6:17: functions.f.triggers[1].stream: invalid topic name \"a b\" (1 to 249 of A-Z a-z "
		     "0-9 . _ -)");
	expect_error("functions:\n  f:\n    run: x\n    triggers:\n      - stream: a\n      - 7\n",
		     "app.yml:6:9: functions.f.triggers[1]: expected a mapping");
	expect_error(FN "        group: \"\"\n",
		     "app.yml:6:16: functions.f.triggers[0].group: invalid group name (1 to 255 bytes, no control "
		     "characters)");
	expect_error(FN "        batch_size: 0\n",
		     "app.yml:6:21: functions.f.triggers[0].batch_size: out of range: expected 1 to 10000");
	expect_error(FN "        batch_window: 5m1s\n",
		     "app.yml:6:23: functions.f.triggers[0].batch_window: expected a duration: milliseconds, or a "
		     "number with a unit (ms, s, m, h, d)");
	expect_error(FN "        batch_window: 6m\n",
		     "app.yml:6:23: functions.f.triggers[0].batch_window: out of range: expected 0ms to 5m");
	expect_error(FN "        ordering: keys\n",
		     "app.yml:6:19: functions.f.triggers[0].ordering: expected key, partition or none");
	expect_error(FN "        concurrency: 1001\n",
		     "app.yml:6:22: functions.f.triggers[0].concurrency: out of range: expected 1 to 1000");
	expect_error(FN "        retry: { attempts: 0 }\n",
		     "app.yml:6:28: functions.f.triggers[0].retry.attempts: out of range: expected 1 to 1000");
	expect_error(FN "        retry: { base: 2h }\n",
		     "app.yml:6:24: functions.f.triggers[0].retry.base: out of range: expected 1ms to 1h");
	expect_error(FN "        retry: { base: 5s, max: 1s }\n",
		     "app.yml:6:33: functions.f.triggers[0].retry.max: must be at least base (5s)");
	expect_error(FN "        retry: 3\n", "app.yml:6:16: functions.f.triggers[0].retry: expected a mapping");
	expect_error(FN "        max_age: forever\n",
		     "app.yml:6:18: functions.f.triggers[0].max_age: expected a duration: milliseconds, or a number "
		     "with a unit (ms, s, m, h, d)");
	expect_error(FN "        on_failure: dlq/1\n",
		     "app.yml:6:21: functions.f.triggers[0].on_failure: invalid topic name \"dlq/1\" (1 to 249 of "
		     "A-Z a-z 0-9 . _ -)");
	expect_error(FN "        filter: [a]\n", "app.yml:6:17: functions.f.triggers[0].filter: expected a mapping");
	expect_error(FN "        filter: { a: [1], a: [2] }\n",
		     "app.yml:6:27: functions.f.triggers[0].filter: duplicate key \"a\"");
	expect_error(FN "        filter: { a: { ? [k] : 1 } }\n",
		     "app.yml:6:26: functions.f.triggers[0].filter.a: expected a string key");
	expect_error(FN "        filter: { a: [1e999] }\n",
		     "app.yml:6:23: functions.f.triggers[0].filter.a[0]: number out of range");
	expect_error("functions:\n  f:\n    run: x\n    triggers:\n      - stream: a\n      - stream: b\n"
		     "      - stream: a\n",
		     "app.yml:7:9: functions.f.triggers[2]: triggers[0] already reads stream \"a\" with group \"f.a\"");
	expect_error("functions:\n  f:\n    run: x\n    triggers:\n      - { stream: a, group: g }\n"
		     "      - { stream: a, group: g }\n",
		     "app.yml:6:9: functions.f.triggers[1]: triggers[0] already reads stream \"a\" with group \"g\"");
}

static void test_trigger_groups_and_relaxed_defaults(void **state)
{
	(void)state;
	/* One stream twice is fine with different groups; a long base or a large min raises the default max. */
	app_t *app = parse_ok("functions:\n  f:\n    run: x\n    scale: { min: 8 }\n    triggers:\n"
			      "      - { stream: a, retry: { base: 20s } }\n      - { stream: a, group: other }\n");
	const fn_def_t *fn = &app->functions[0];
	assert_int_equal(fn->min_workers, 8);
	assert_int_equal(fn->max_workers, 8);
	assert_string_equal(fn->triggers[0].group, "f.a");
	assert_string_equal(fn->triggers[1].group, "other");
	assert_int_equal(fn->triggers[0].retry_base_ms, 20000);
	assert_int_equal(fn->triggers[0].retry_max_ms, 20000);
	assert_int_equal(fn->triggers[0].line, 6);
	assert_int_equal(fn->triggers[1].line, 7);
	app_free(app);
}

static void test_filter_compile_error(void **state)
{
	(void)state;
	/* The message after the path is filter_compile's own; only its prefix is ours. */
	char err[512] = "";
	const char *yaml = FN "        filter:\n          data: { price: [ { numerc: [\">\", 1] } ] }\n";
	app_t *app = app_parse(yaml, strlen(yaml), "app.yml", err, sizeof err);
	assert_null(app);
	const char *want = "app.yml:7:11: functions.f.triggers[0].filter: ";
	assert_int_equal(strncmp(err, want, strlen(want)), 0);
	assert_true(strlen(err) > strlen(want));
}

static void test_limits(void **state)
{
	(void)state;
	char err[256];
	/* 1001 streams. */
	size_t cap = 32 * 1024;
	char *yaml = malloc(cap);
	size_t len = (size_t)snprintf(yaml, cap, "streams:\n");
	for (int i = 0; i <= 1000; i++)
		len += (size_t)snprintf(yaml + len, cap - len, "  s%d:\n", i);
	assert_null(app_parse(yaml, len, "app.yml", err, sizeof err));
	assert_string_equal(err, "app.yml:2:3: streams: too many entries (at most 1000)");
	/* 1000 are fine. */
	len = (size_t)snprintf(yaml, cap, "streams:\n");
	for (int i = 0; i < 1000; i++)
		len += (size_t)snprintf(yaml + len, cap - len, "  s%d:\n", i);
	app_t *app = app_parse(yaml, len, "app.yml", err, sizeof err);
	assert_non_null(app);
	assert_int_equal(app->nstreams, 1000);
	app_free(app);
	/* 1001 triggers. */
	len = (size_t)snprintf(yaml, cap, "functions:\n  f:\n    run: x\n    triggers:\n");
	for (int i = 0; i <= 1000; i++)
		len += (size_t)snprintf(yaml + len, cap - len, "      - stream: s%d\n", i);
	assert_null(app_parse(yaml, len, "app.yml", err, sizeof err));
	assert_string_equal(err, "app.yml:5:7: functions.f.triggers: too many triggers (at most 1000)");
	free(yaml);
	/* More than 1 MiB. */
	len = (1 << 20) + 1;
	yaml = malloc(len);
	memset(yaml, '#', len);
	assert_null(app_parse(yaml, len, "app.yml", err, sizeof err));
	assert_string_equal(err, "app.yml: too large (1048577 bytes, at most 1048576)");
	free(yaml);
}

static void test_load(void **state)
{
	(void)state;
	char err[512];
	assert_null(app_load("/nonexistent/factlog.yml", err, sizeof err));
	assert_string_equal(err, "cannot read /nonexistent/factlog.yml: No such file or directory");
	assert_null(app_load("/", err, sizeof err));
	assert_string_equal(err, "cannot read /: Is a directory");

	char dir[] = "/tmp/test_appfile.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof path, "%s/factlog.yml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(FN "        batch_size: x\n", f);
	fclose(f);
	assert_null(app_load(path, err, sizeof err));
	char want[512];
	snprintf(want, sizeof want, "%s:6:21: functions.f.triggers[0].batch_size: expected an integer", path);
	assert_string_equal(err, want);

	f = fopen(path, "w");
	assert_non_null(f);
	fputs(FN, f);
	fclose(f);
	app_t *app = app_load(path, err, sizeof err);
	assert_non_null(app);
	assert_string_equal(app->path, path);
	char *real = realpath(dir, NULL);
	assert_string_equal(app->dir, real);
	free(real);
	app_free(app);

	/* Larger than 1 MiB: refused without parsing. */
	f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < (1 << 20) / 16 + 1; i++)
		fputs("# padding.......\n", f);
	fclose(f);
	assert_null(app_load(path, err, sizeof err));
	snprintf(want, sizeof want, "%s: too large (more than 1048576 bytes)", path);
	assert_string_equal(err, want);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_example),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_and_memory),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_start),
		cmocka_unit_test(test_filter_types),
		cmocka_unit_test(test_errors_yaml),
		cmocka_unit_test(test_errors_structure),
		cmocka_unit_test(test_errors_function),
		cmocka_unit_test(test_errors_trigger),
		cmocka_unit_test(test_trigger_groups_and_relaxed_defaults),
		cmocka_unit_test(test_filter_compile_error),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
