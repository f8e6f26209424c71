/*
 * runtime.h -- functions: code in any language invoked with batches of events from the ledger.
 *
 * Purpose: run an app file's functions. Each trigger is one Kafka consumer group (librdkafka) whose events
 * are filtered, batched and handed to warm worker processes (NDJSON on stdin/stdout, docs/functions.md) or
 * POSTed to an HTTP target; emitted events and dead letters go out through one librdkafka producer.
 * The runtime is a Kafka *client*: it never includes storage/, so `factlog run --bootstrap` runs the same code
 * against any Kafka-compatible cluster, and `factlog serve --app` runs it against its own listener.
 *
 * Invariants:
 *   1. At least once: a partition's committed offset is the lowest offset not yet done (processed, filtered
 *      out, or dead-lettered with the dead letter acknowledged by the broker); a restart never skips one.
 *   2. ordering key: events with one key are in flight one at a time, in offset order; partition: one batch
 *      in flight per partition; none: up to `concurrency` batches per partition.
 *   3. Memory is bounded: a partition with too many undone events is paused until it drains.
 * Threads: per trigger one consumer thread (the scheduler; all partition state is its own); per function a
 *   pool of worker threads (one per worker process or HTTP connection) between scale.min and scale.max;
 *   one producer thread serving delivery reports. Workers report to their trigger through a locked queue.
 *   4. A replay (runtime_replay_start) never moves a live group's position, except to hand over with
 *      `then live`: the live trigger is stopped (it commits), the range [from, boundary) is processed by a
 *      bounded trigger committing to "<group>.replay", then the live group is committed at the boundary and
 *      the live trigger started again. One replay per function at a time. A replay outlives a restart: its
 *      request is recorded in LOG_DIR/NAME.replay until it ends, and the function's next start resumes it.
 * Ownership: the runtime owns the app it is given (runtime_start and runtime_deploy take it).
 */
#ifndef FL_RUNTIME_RUNTIME_H
#define FL_RUNTIME_RUNTIME_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "runtime/appfile.h"

typedef struct runtime runtime_t;

typedef struct {
	const char *bootstrap;   /* Kafka bootstrap servers, e.g. "127.0.0.1:9092" */
	bool create_streams;     /* create the app's streams (CreateTopics) when missing; default true */
	int64_t stop_timeout_ms; /* how long stopping waits for invocations in flight (default 10000) */
	const char *log_dir;     /* each function's log (its workers' stderr and the runtime's notes about it)
				    is LOG_DIR/NAME.log; default "." */
} runtime_opts_t;

void runtime_opts_default(runtime_opts_t *o);

/* Starts every function of app (taken, also on failure). On failure writes why into err. */
err_t runtime_start(const runtime_opts_t *o, app_t *app, runtime_t **out, char *err, size_t errcap);
/* Replaces the running app with app (taken): functions whose definition changed are stopped (in-flight
 * invocations finish, positions are committed) and started again; removed ones stop; new ones start. */
err_t runtime_deploy(runtime_t *rt, app_t *app, char *err, size_t errcap);
/* {"functions":[{name, state, workers, lag, invocations, errors, ...}]} (new reference). */
json_t *runtime_list_json(runtime_t *rt);
/* One function in detail, or NULL when there is no such function (new reference). */
json_t *runtime_describe_json(runtime_t *rt, const char *name);
/* The last `lines` lines its workers wrote on stderr (malloc'd), or NULL when there is no such function. */
char *runtime_logs(runtime_t *rt, const char *name, int lines);
void runtime_stop(runtime_t *rt);

/* A replay request. Bounds are "earliest", "latest", an offset (digits, the same for every partition), an
 * RFC 3339 time with a zone, or "@" and epoch milliseconds; a time means the first record at or after it. */
typedef struct {
	const char *from;        /* required */
	const char *to;          /* NULL: the high watermarks when the replay starts (exclusive, as every end) */
	const char *stream;      /* NULL: the function's only trigger */
	bool then_live;          /* hand the trigger's live group over at the end of the range */
} runtime_replay_req_t;

/* Starts replaying a range of a function's stream through it, in the background. On OK *out is the replay's
 * description (new reference). Errors (err says why): ERR_NOT_FOUND no such function; ERR_INVALID a bad
 * request; ERR_EXISTS a replay of this function is running. */
err_t runtime_replay_start(runtime_t *rt, const char *name, const runtime_replay_req_t *req, json_t **out,
			   char *err, size_t errcap);
/* Asks the function's running replay to stop (it commits where it got to, so starting the same replay again
 * resumes it). On OK *out is its description (new reference). ERR_NOT_FOUND: no such function, or no replay
 * running. */
err_t runtime_replay_cancel(runtime_t *rt, const char *name, json_t **out, char *err, size_t errcap);

#endif
