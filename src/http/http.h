/*
 * http.h -- the HTTP front door: CloudEvents in with a ledger receipt out, reads, topic admin, the
 * read-your-writes wait, health and metrics. Built on libmicrohttpd (its epoll thread pool).
 *
 * Invariants:
 *   1. A POST answers 200 with receipts only once every event in it is durable (flush=always); requests
 *      waiting for the disk or for a commit are suspended, never blocking a thread.
 *   2. Bad input gets a 4xx with a JSON body {"error": code, "message": why} and appends nothing.
 *   3. A repeated (source, id) within dedup_window_ms answers the original receipt and appends nothing;
 *      entries are recorded only once durable (a retry never acknowledges an unflushed write).
 * Threads: libmicrohttpd's pool runs handlers; one timer thread runs wait timeouts. Completions from the
 *   storage flusher resume suspended connections.
 * Ownership: the server borrows the storage_t, which must outlive it.
 */
#ifndef FL_HTTP_HTTP_H
#define FL_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"
#include "storage/storage.h"

typedef struct http_server http_server_t;

/* Routes another part serves (the functions runtime: /v1/functions, /v1/app), wired by the server so http/
 * does not depend on runtime/. The handler runs on a pool thread with the whole body and may block briefly. */
typedef struct {
	const char *method, *path;
	const char *content_type; /* NULL when absent */
	const uint8_t *body;
	size_t body_len;
	void *opaque; /* for http_ext_arg */
} http_ext_req_t;
typedef struct {
	int status;          /* 0: not this handler's route (404) */
	json_t *json;        /* the body (reference taken), or */
	char *text;          /* a text/plain body (malloc'd, taken) */
} http_ext_reply_t;
typedef void (*http_ext_fn)(void *ctx, const http_ext_req_t *req, http_ext_reply_t *out);
/* A query argument of the request, or NULL. */
const char *http_ext_arg(const http_ext_req_t *req, const char *name);

typedef struct {
	const char *listen_host; /* default 127.0.0.1 */
	int listen_port;         /* default 8080; 0 picks a free port */
	int threads;             /* default: number of CPUs */
	size_t max_body_bytes;   /* default 8 MiB */
	int64_t dedup_window_ms; /* default 600000 (10 min) */
	int dedup_max;           /* remembered (source, id) pairs (default 1000000) */
	int64_t wait_max_ms;     /* longest read-your-writes wait (default 300000) */
	http_ext_fn ext;         /* NULL or the handler of paths no built-in route serves */
	void *ext_ctx;
} http_opts_t;

void http_opts_default(http_opts_t *o);
err_t http_server_start(storage_t *st, const http_opts_t *o, http_server_t **out);
int http_server_port(const http_server_t *s);
/* Wakes live tails (Server-Sent Events) to look for new data. Thread-safe, cheap. */
void http_server_notify_data(http_server_t *s);
void http_server_stop(http_server_t *s);

#endif
