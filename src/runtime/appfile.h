/*
 * appfile.h -- the app file (factlog.yml): streams and the functions that react to them.
 *
 * Purpose: a pure parser (bytes in, a validated app_t or an error naming the line and the field out),
 * built on libyaml. Example:
 *
 *   streams:
 *     clicks: { partitions: 8, retention: 7d }
 *   functions:
 *     shelf:
 *       run: ./shelf.py            # any executable, run through /bin/sh -c, in the app file's directory
 *       env: { DB: shelf.db }
 *       timeout: 30s
 *       scale: { min: 0, max: 4, idle: 60s }
 *       triggers:
 *         - stream: clicks
 *           batch_size: 100
 *           batch_window: 20ms
 *           start: earliest         # earliest | latest | RFC 3339 time | epoch milliseconds
 *           ordering: key           # key | partition | none
 *           concurrency: 16
 *           filter: { type: [click], data: { price: [ { numeric: [">", 10] } ] } }
 *           retry: { attempts: 3, base: 100ms, max: 10s }
 *           max_age: 1h
 *           on_failure: clicks-dlq
 *
 * Durations are integers (milliseconds) or strings with a unit: ms, s, m, h, d. Sizes: integers (bytes) or
 * strings with KiB, MiB, GiB. Unknown fields are errors (a typo must not silently change behaviour).
 * Errors read "FILE:LINE:COL: path.to.field: problem", e.g.
 *   "factlog.yml:12:9: functions.shelf.triggers[0].ordering: expected key, partition or none".
 * Limits: at most 1 MiB of text, 64 levels of nesting, 1000 streams, 1000 functions, and 1000 triggers and 1000
 * env variables per function. One YAML document; aliases (*x) are refused (anchors are ignored). A null value
 * where a mapping is expected (`clicks:` with nothing after it) means all defaults; a trigger's filter is
 * converted to JSON with plain (unquoted) numbers, true/false and null typed and everything else a string.
 * Invariants of a parsed app: names are unique; each function has exactly one of run/http and at least one
 * trigger; every number is within the ranges documented on the fields below; filters compile.
 * Ownership: app_t owns everything it points to; app_free releases it.
 */
#ifndef FL_RUNTIME_APPFILE_H
#define FL_RUNTIME_APPFILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/filter.h"

typedef enum { FN_ORDER_KEY, FN_ORDER_PARTITION, FN_ORDER_NONE } fn_ordering_t;
typedef enum { FN_START_LATEST, FN_START_EARLIEST, FN_START_TIME } fn_start_t;

typedef struct {
	char *name;              /* topic name: [A-Za-z0-9._-]{1,249} */
	int partitions;          /* 1..10000, default 1 */
	int64_t retention_ms;    /* -1 (default): the broker's default */
	int64_t retention_bytes; /* -1 (default): the broker's default */
	int line;
} app_stream_t;

typedef struct {
	char *stream;            /* required: the topic */
	char *group;             /* consumer group; default: the function's name, or NAME.STREAM when the
				    function has several triggers; if given, 1..255 bytes, no control characters.
				    No two triggers of a function share both stream and group */
	int batch_size;          /* 1..10000, default 100 */
	int64_t batch_window_ms; /* 0..300000, default 0: invoke as soon as events are there */
	fn_start_t start;        /* default latest (as Lambda's LATEST) */
	int64_t start_time_ms;   /* for FN_START_TIME: epoch milliseconds */
	fn_ordering_t ordering;  /* default key */
	int concurrency;         /* 1..1000, default 1: batches in flight per partition (key, none) */
	json_t *filter_json;     /* NULL or the pattern as written (owned) */
	filter_t *filter;        /* NULL or compiled from filter_json (owned) */
	int retry_attempts;      /* 1..1000, default 3: invocations of an event before it is dead-lettered */
	int64_t retry_base_ms;   /* 1..3600000, default 100 */
	int64_t retry_max_ms;    /* retry_base_ms..86400000, default 10000 (retry_base_ms if that is larger) */
	int64_t max_age_ms;      /* 0 (default): unlimited; a failing event older than this is dead-lettered */
	char *on_failure;        /* NULL or the dead-letter topic */
	int line;
} fn_trigger_t;

typedef struct {
	char *name;              /* [A-Za-z0-9_-]{1,64} */
	char *run;               /* NULL or a shell command */
	char *http;              /* NULL or an http:// or https:// URL */
	char **env;              /* "KEY=VALUE" strings, nenv of them; KEY is [A-Za-z_][A-Za-z0-9_]* */
	int nenv;
	int64_t timeout_ms;      /* 1..900000, default 30000: per invocation */
	int min_workers;         /* 0..1000, default 0 */
	int max_workers;         /* 1..1000, default 4 (min_workers if that is larger), >= min_workers */
	int64_t idle_ms;         /* 0..86400000, default 60000: an idle worker above the minimum stops */
	fn_trigger_t *triggers;
	int ntriggers;
	int line;
} fn_def_t;

typedef struct {
	char *path;              /* the file as given ("<memory>" for app_parse) */
	char *dir;               /* its directory: commands run there */
	app_stream_t *streams;
	int nstreams;
	fn_def_t *functions;
	int nfunctions;
} app_t;

/* Parses text (len bytes). Returns NULL and writes the error (see above) into err on failure. filename is
 * used in messages and for dir (NULL: "<memory>" and the current directory). */
app_t *app_parse(const char *text, size_t len, const char *filename, char *err, size_t errcap);
/* Reads and parses a file; a missing or unreadable file is an error naming the path and errno's text. */
app_t *app_load(const char *path, char *err, size_t errcap);
void app_free(app_t *app);

const fn_def_t *app_function(const app_t *app, const char *name);
/* An RFC 3339 time with a zone (as `start` takes it) in epoch milliseconds; false when malformed. */
bool app_parse_time(const char *s, size_t len, int64_t *out_ms);
const char *fn_ordering_name(fn_ordering_t o);

#endif
