/*
 * gateway.c -- the HTTP routes. See http.h.
 *
 *   POST   /v1/topics/{topic}/events                     CloudEvents (binary, structured, batch) -> receipts
 *   GET    /v1/topics/{topic}/partitions/{p}/events      ?from=OFFSET&limit=N -> CloudEvents batch
 *   GET    /v1/topics | POST /v1/topics | GET|DELETE /v1/topics/{topic}
 *   GET    /v1/topics/{topic}/events  (Accept: text/event-stream) live tail: ?partitions=0,2&from=earliest|latest,
 *          resumes from Last-Event-ID (the cursor "P:NEXT,P:NEXT,..." each event carries as its id)
 *   GET    /v1/groups/{group}/wait?topic=T&partition=P&offset=O&timeout_ms=N
 *   GET    /healthz, /readyz, /metrics
 *
 * A request's life: MHD calls on_request with the headers (a hreq_t is made), then with body chunks
 * (bounded by max_body_bytes), then with none: the route runs. If it must wait (fsync, a commit) it
 * counts what it waits for in `remaining`, suspends the connection under `mu`, and the last completion
 * resumes it; MHD then calls on_request again and the response is queued. The mutex makes "suspend, then
 * resume" ordered even when a completion races the suspension.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/thread.h"
#include "core/clock.h"
#include "core/compat.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "core/loop.h"
#include "event/cloudevents.h"
#include "http/http.h"
#include "storage/codec.h"
#include "storage/recordbatch.h"

#define EVENTS_MAX 100000
#define READ_LIMIT_MAX 10000

/* A remembered receipt: 40 bytes, so a full ring of a million stays small and cache-friendly. */
typedef struct {
	char *key; /* source "\n" id, then after its terminator the topic's name (one allocation) */
	uint64_t hash;
	int64_t offset, at_ms;
	int32_t chain; /* next entry in the same bucket, -1 at the end */
	int32_t partition;
} dedup_t;

typedef struct sse sse_t;

struct http_server {
	storage_t *st;
	sse_t *streams; /* live tails, under mu */
	loop_timer_t keepalive;
	loop_task_t task_keepalive;
	http_opts_t opts;
	struct MHD_Daemon *d;
	int port;
	loop_t *timers;
	struct hreq *wait_timers;  /* armed wait timers: the timer thread's, the stopping thread's after it ends */
	pthread_t timer_thread;
	pthread_mutex_t mu; /* dedup table, suspended list, counters of routes */
	dedup_t *dedup;     /* ring of recent receipts, hashed into buckets */
	size_t ndedup, dedup_next;
	int32_t *buckets;
	size_t nbuckets;
	struct hreq *suspended;
	atomic_uint_fast64_t rr;
	atomic_uint_fast64_t events_in, requests, errors_4xx, errors_5xx, dups;
	atomic_int draining; /* requests resumed by http_server_stop whose 503 is not sent yet */
	bool stopping;
};

typedef struct hreq hreq_t;

typedef struct {
	partition_waiter_t w; /* first */
	hreq_t *req;
} hwait_t;

typedef struct {
	char topic[TOPIC_NAME_MAX + 1];
	int32_t partition;
	int64_t offset;
	bool dup;
	char *dedup_key; /* as dedup_t's key: source "\n" id "\0" topic */
	uint64_t hash;   /* of dedup_key */
} receipt_t;

struct hreq {
	http_server_t *srv;
	struct MHD_Connection *mc;
	buf_t body;
	bool too_large, routed;
	int status;
	char *out;
	const char *ctype;
	char next_offset[24];
	/* async */
	pthread_mutex_t mu;
	int remaining;
	bool suspended;
	err_t wait_err;
	hwait_t *waits;
	int nwaits;
	receipt_t *receipts;
	int nreceipts;
	bool single;
	void (*finish)(hreq_t *r);
	/* wait endpoint */
	commit_waiter_t cw;
	char *cw_group, *cw_topic;
	loop_timer_t timer;
	loop_task_t task;
	/* The wait's timer, on the timer thread only: 0 not started, 1 armed (linked in srv->wait_timers),
	 * 2 fired or cancelled. A commit cancels it through cancel_task, so a request answered early does not
	 * stay allocated until its timeout. */
	int tstate;
	struct hreq *wt_prev, *wt_next;
	loop_task_t cancel_task;
	int64_t wait_ms;
	atomic_bool claimed;
	atomic_int refs;
	int64_t committed;
	bool timed_out;
	hreq_t *susp_next, *susp_prev; /* in srv->suspended, doubly linked: a completion unlinks in O(1) */
	bool susp_linked;              /* in srv->suspended (srv->mu) */
	bool produce;                  /* a produce that got as far as waiting for its receipts */
	int64_t start_ns;              /* when its headers arrived (monotonic), for the latency histogram */
	bool stop_answered;            /* resumed by http_server_stop: counted in srv->draining */
	sse_t *sse; /* a live tail: the response streams from it */
};

/* ---------------------------------------------------------------- responses */

static void reply_json(hreq_t *r, int status, json_t *body)
{
	r->status = status;
	r->out = json_dumps(body, JSON_COMPACT);
	r->ctype = "application/json";
	json_decref(body);
}

static void reply_error(hreq_t *r, int status, const char *code, const char *msg)
{
	reply_json(r, status, json_pack("{s:s,s:s}", "error", code, "message", msg));
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max);
static void sse_free(void *cls);

static enum MHD_Result queue(hreq_t *r)
{
	if (r->sse != NULL) {
		struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_read,
									      r->sse, sse_free);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		enum MHD_Result ret = MHD_queue_response(r->mc, MHD_HTTP_OK, resp);
		MHD_destroy_response(resp);
		r->sse = NULL;
		return ret;
	}
	if (r->status >= 500)
		atomic_fetch_add(&r->srv->errors_5xx, 1);
	else if (r->status >= 400)
		atomic_fetch_add(&r->srv->errors_4xx, 1);
	else if (r->produce)
		stats_hist_observe(&storage_stats(r->srv->st)->http_produce, clock_mono_ns(clock_system()) - r->start_ns);
	/* The body is handed over (MHD frees it with free()), not copied. */
	struct MHD_Response *resp;
	if (r->out != NULL) {
		resp = MHD_create_response_from_buffer(strlen(r->out), r->out, MHD_RESPMEM_MUST_FREE);
		r->out = NULL;
	} else {
		resp = MHD_create_response_from_buffer(0, (void *)(uintptr_t)"", MHD_RESPMEM_PERSISTENT);
	}
	if (r->ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
	if (r->next_offset[0])
		MHD_add_response_header(resp, "Factlog-Next-Offset", r->next_offset);
	enum MHD_Result ret = MHD_queue_response(r->mc, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---------------------------------------------------------------- async completion */

/* Takes r out of srv->suspended if it is there (s->mu held). */
static void susp_unlink(http_server_t *s, hreq_t *r)
{
	if (!r->susp_linked)
		return;
	if (r->susp_prev != NULL)
		r->susp_prev->susp_next = r->susp_next;
	else
		s->suspended = r->susp_next;
	if (r->susp_next != NULL)
		r->susp_next->susp_prev = r->susp_prev;
	r->susp_next = r->susp_prev = NULL;
	r->susp_linked = false;
}

static void complete_one(hreq_t *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->remaining == 0) { /* shutdown already answered and resumed it */
		pthread_mutex_unlock(&r->mu);
		return;
	}
	if (--r->remaining == 0 && r->suspended) {
		r->suspended = false;
		http_server_t *s = r->srv;
		pthread_mutex_lock(&s->mu);
		susp_unlink(s, r);
		pthread_mutex_unlock(&s->mu);
		MHD_resume_connection(r->mc);
	}
	pthread_mutex_unlock(&r->mu);
}

static void hreq_unref(hreq_t *r);

/* Flusher thread. Each registered waiter holds a reference, so a request answered and freed by MHD at
 * shutdown stays valid until the storage completes (or fails) its waiters. */
static void on_durable(partition_waiter_t *w, err_t status)
{
	hwait_t *hw = (hwait_t *)w;
	hreq_t *r = hw->req;
	if (status != OK)
		r->wait_err = status;
	complete_one(r);
	hreq_unref(r);
}

static void hreq_unref(hreq_t *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	for (int i = 0; i < r->nreceipts; i++)
		free(r->receipts[i].dedup_key);
	free(r->receipts);
	free(r->waits);
	free(r->cw_group);
	free(r->cw_topic);
	free(r->out);
	buf_free(&r->body);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* ---------------------------------------------------------------- helpers */

static bool path_seg(const char **p, char *out, size_t cap)
{
	if (**p != '/')
		return false;
	(*p)++;
	size_t n = strcspn(*p, "/");
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, *p, n);
	out[n] = 0;
	*p += n;
	return true;
}

static const char *arg(hreq_t *r, const char *name)
{
	return MHD_lookup_connection_value(r->mc, MHD_GET_ARGUMENT_KIND, name);
}

static bool arg_i64(hreq_t *r, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
	const char *v = arg(r, name);
	if (v == NULL)
		return false;
	char *end;
	long long x = strtoll(v, &end, 10);
	if (end == v || *end != 0 || x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

static int status_for(err_t rc)
{
	if (rc == ERR_NOT_FOUND)
		return 404;
	if (rc == ERR_EXISTS)
		return 409;
	if (rc == ERR_INVALID || rc == ERR_MALFORMED || rc == ERR_CRC || rc == ERR_TIMESTAMP)
		return 400;
	if (rc == ERR_TOO_LARGE)
		return 413;
	if (err_is_nospace(rc) || rc == ERR_FAILED || rc == ERR_CORRUPT)
		return 503;
	return 500;
}

/* ---------------------------------------------------------------- topics */

static json_t *topic_json(topic_t *t)
{
	json_t *parts = json_array();
	for (int32_t i = 0; i < topic_partition_count(t); i++) {
		err_t oe;
		partition_t *p = topic_partition(t, i, &oe);
		if (p == NULL) {
			json_array_append_new(parts, json_pack("{s:i,s:s}", "partition", i, "error", err_str(oe)));
			continue;
		}
		partition_info_t in;
		partition_info(p, &in);
		json_t *pj = json_pack("{s:i,s:I,s:I,s:I,s:i,s:I}", "partition", i, "log_start",
				       (json_int_t)in.log_start, "high_watermark", (json_int_t)in.hwm, "bytes",
				       (json_int_t)in.size_bytes, "segments", in.segments, "local_log_start",
				       (json_int_t)in.local_log_start);
		if (in.archived_segments > 0)
			json_object_set_new(pj, "archive",
					    json_pack("{s:I,s:I,s:I}", "segments", (json_int_t)in.archived_segments,
						      "start", (json_int_t)in.archived_start, "end",
						      (json_int_t)in.archived_end));
		json_array_append_new(parts, pj);
	}
	return json_pack("{s:s,s:o}", "name", topic_name(t), "partitions", parts);
}

static void add_topic(void *arg_, const char *name)
{
	void **a = arg_;
	topic_t *t = storage_topic_get(a[0], name);
	if (t) {
		json_array_append_new(a[1], topic_json(t));
		topic_put(t);
	}
}

static void route_topics(hreq_t *r, const char *method, const char *name)
{
	storage_t *st = r->srv->st;
	if (name == NULL && strcmp(method, "GET") == 0) {
		json_t *arr = json_array();
		void *a[2] = { st, arr };
		storage_topic_names(st, add_topic, a);
		reply_json(r, 200, json_pack("{s:o}", "topics", arr));
	} else if (name == NULL && strcmp(method, "POST") == 0) {
		json_error_t je;
		json_t *b = json_loadb((const char *)r->body.data, r->body.len, 0, &je);
		const char *tname = NULL;
		json_int_t parts = 1;
		json_t *configs = NULL;
		if (b == NULL || json_unpack(b, "{s:s,s?I,s?o}", "name", &tname, "partitions", &parts, "configs", &configs) != 0 ||
		    (configs && !json_is_object(configs))) {
			reply_error(r, 400, "bad_request",
				    "expected {\"name\": string, \"partitions\": integer, \"configs\": {key: string}}");
		} else if (parts < 1 || parts > TOPIC_PARTITIONS_MAX) {
			reply_error(r, 400, "invalid_partitions", "partitions must be 1 to 10000");
		} else {
			topic_kv_t kv[64];
			int n = 0;
			const char *k;
			json_t *v;
			bool ok = true;
			char why[400] = "";
			partition_config_t probe;
			partition_config_default(&probe);
			if (configs)
				json_object_foreach(configs, k, v) {
					const char *bad = NULL;
					if (n == 64 || !json_is_string(v))
						bad = "configs: at most 64, each value a string";
					else if (topic_config_apply(&probe, k, json_string_value(v), &bad) != OK)
						snprintf(why, sizeof why, "config %s=%s: %s", k, json_string_value(v), bad);
					if (bad != NULL) {
						if (!why[0])
							snprintf(why, sizeof why, "%s", bad);
						ok = false;
						break;
					}
					kv[n].key = k;
					kv[n].value = json_string_value(v);
					n++;
				}
			err_t rc = ok ? storage_topic_create(st, tname, (int32_t)parts, kv, n) : ERR_INVALID;
			if (!ok) {
				reply_error(r, 400, "invalid_config", why);
			} else if (rc == OK) {
				topic_t *t = storage_topic_get(st, tname);
				reply_json(r, 201, topic_json(t));
				topic_put(t);
			} else if (rc == ERR_EXISTS) {
				reply_error(r, 409, "topic_exists", "the topic already exists");
			} else {
				reply_error(r, status_for(rc), "invalid_topic",
					    "invalid topic name (1-249 of [A-Za-z0-9._-]) or config");
			}
		}
		json_decref(b);
	} else if (name != NULL && strcmp(method, "GET") == 0) {
		topic_t *t = storage_topic_get(st, name);
		if (t == NULL)
			reply_error(r, 404, "unknown_topic", "no such topic");
		else
			reply_json(r, 200, topic_json(t));
		topic_put(t);
	} else if (name != NULL && strcmp(method, "DELETE") == 0) {
		err_t rc = storage_topic_delete(st, name);
		if (rc == OK)
			reply_json(r, 200, json_pack("{s:s}", "deleted", name));
		else
			reply_error(r, status_for(rc), "unknown_topic", err_str(rc));
	} else {
		reply_error(r, 405, "method_not_allowed", "use GET, POST (collection) or DELETE (topic)");
	}
}

/* ---------------------------------------------------------------- produce */

typedef struct {
	ce_event_t *v;
	int n, cap;
} events_t;

static ce_event_t *ev_new(events_t *e)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 8;
		e->v = realloc(e->v, (size_t)e->cap * sizeof *e->v);
		ASSERT(e->v != NULL);
	}
	ce_event_t *ev = &e->v[e->n++];
	memset(ev, 0, sizeof *ev);
	return ev;
}

static ce_event_t *ev_new_cb(void *arg)
{
	return ev_new(arg);
}

static enum MHD_Result binary_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	ce_event_t *ev = cls;
	if (strncasecmp(key, "ce-", 3) != 0 || value == NULL)
		return MHD_YES;
	char name[32];
	size_t n = strlen(key + 3);
	if (n == 0 || n >= sizeof name)
		return MHD_YES;
	for (size_t i = 0; i <= n; i++)
		name[i] = (char)((key[3 + i] >= 'A' && key[3 + i] <= 'Z') ? key[3 + i] + 32 : key[3 + i]);
	ce_set(ev, name, value);
	return MHD_YES;
}

/* Parses the body into events; NULL or the problem (with *status). */
static const char *parse_events(hreq_t *r, events_t *evs, int *status)
{
	const char *ct = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	char ctype[128] = "";
	if (ct)
		snprintf(ctype, sizeof ctype, "%.*s", (int)strcspn(ct, "; "), ct);
	*status = 400;
	bool structured = strcasecmp(ctype, "application/cloudevents+json") == 0;
	bool batch = strcasecmp(ctype, "application/cloudevents-batch+json") == 0;
	if (structured || batch) {
		/* Straight from the text: no document is built (jansson was most of a batch's cost). */
		r->single = structured;
		const char *why = ce_parse_text(r->body.data ? r->body.data : (const uint8_t *)"", r->body.len, batch,
						EVENTS_MAX, ev_new_cb, evs);
		if (why != NULL && strcmp(why, "too many events in one batch") == 0)
			why = "too many events in one batch (at most 100000)";
		return why;
	}
	/* Binary mode: attributes in ce-* headers, the body is the data. */
	ce_event_t *ev = ev_new(evs);
	MHD_get_connection_values(r->mc, MHD_HEADER_KIND, binary_header, ev);
	if (ev->nattrs == 0) { /* no ce-* header at all: not a CloudEvent in any mode */
		*status = 415;
		return "use Content-Type application/cloudevents+json (structured), "
		       "application/cloudevents-batch+json (batch), or ce-* headers (binary mode)";
	}
	if (ct != NULL)
		ce_set(ev, "datacontenttype", ct);
	ev->has_data = true;
	buf_append(&ev->data, r->body.data, r->body.len);
	r->single = true;
	return NULL;
}

static char *dedup_insert(http_server_t *s, receipt_t *rc, int64_t now);
static void dedup_prefetch(const http_server_t *s, uint64_t h);

/* Appends v in decimal (receipts are written per event: snprintf costs more than the rest of one). */
static void put_decimal(buf_t *b, int64_t v)
{
	char t[24];
	size_t n = sizeof t;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do {
		t[--n] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		t[--n] = '-';
	buf_append(b, t + n, sizeof t - n);
}

static void produce_finish(hreq_t *r)
{
	if (r->wait_err != OK) {
		reply_error(r, 503, "storage_unavailable", err_str(r->wait_err));
		return;
	}
	http_server_t *s = r->srv;
	int64_t now = clock_wall_ms(clock_system());
	/* Durable now: remember for retries. The buckets touched (the new entries' and those of the entries
	 * they evict) are prefetched first, and evicted keys are freed after the lock. */
	char **evicted = malloc((size_t)r->nreceipts * sizeof *evicted);
	ASSERT(evicted != NULL);
	int nevicted = 0;
	pthread_mutex_lock(&s->mu);
	if (s->nbuckets > 0) {
		size_t slot = s->dedup_next;
		for (int i = 0; i < r->nreceipts; i++, slot = (slot + 1) % (size_t)s->opts.dedup_max) {
			dedup_prefetch(s, r->receipts[i].hash);
			if (slot < s->ndedup && s->dedup[slot].key != NULL)
				dedup_prefetch(s, s->dedup[slot].hash);
		}
	}
	for (int i = 0; i < r->nreceipts; i++) {
		receipt_t *rc = &r->receipts[i];
		if (rc->dup || rc->dedup_key == NULL || s->nbuckets == 0)
			continue;
		char *old = dedup_insert(s, rc, now);
		if (old != NULL)
			evicted[nevicted++] = old;
	}
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < nevicted; i++)
		free(evicted[i]);
	free(evicted);
	/* The receipts as text, built straight into the body: topic names need no escaping ([A-Za-z0-9._-]). */
	buf_t b = { 0 };
	buf_reserve(&b, (size_t)r->nreceipts * (TOPIC_NAME_MAX + 64) + 3);
	if (!r->single)
		buf_put_u8(&b, '[');
	for (int i = 0; i < r->nreceipts; i++) {
		const receipt_t *rc = &r->receipts[i];
		if (i > 0)
			buf_put_u8(&b, ',');
		buf_append(&b, "{\"topic\":\"", 10);
		buf_append(&b, rc->topic, strlen(rc->topic));
		buf_append(&b, "\",\"partition\":", 14);
		put_decimal(&b, rc->partition);
		buf_append(&b, ",\"offset\":", 10);
		put_decimal(&b, rc->offset);
		buf_put_u8(&b, '}');
	}
	if (!r->single)
		buf_put_u8(&b, ']');
	buf_put_u8(&b, 0);
	r->status = 200;
	r->out = (char *)b.data; /* owned by r now */
	r->ctype = "application/json";
}

static uint64_t key_hash(const char *k)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *k; k++)
		h = (h ^ (uint8_t)*k) * 1099511628211ull;
	return h;
}

/* Removes ring entry i from its bucket chain (s->mu held). */
static void dedup_unlink(http_server_t *s, int32_t i)
{
	int32_t *pp = &s->buckets[s->dedup[i].hash & (s->nbuckets - 1)];
	for (int guard = 0; *pp >= 0 && guard < (1 << 30); guard++) {
		if (*pp == i) {
			*pp = s->dedup[i].chain;
			return;
		}
		pp = &s->dedup[*pp].chain;
	}
}

/* Remembers a durable receipt, evicting the oldest when the ring is full (s->mu held). Returns the evicted
 * entry's key for the caller to free (outside the lock), or NULL. */
static char *dedup_insert(http_server_t *s, receipt_t *rc, int64_t now)
{
	size_t max = (size_t)s->opts.dedup_max;
	if (s->ndedup < max) {
		if (s->ndedup % 4096 == 0) {
			s->dedup = realloc(s->dedup, (s->ndedup + 4096 < max ? s->ndedup + 4096 : max) * sizeof *s->dedup);
			ASSERT(s->dedup != NULL);
		}
		memset(&s->dedup[s->ndedup++], 0, sizeof(dedup_t));
	}
	int32_t i = (int32_t)s->dedup_next;
	s->dedup_next = (s->dedup_next + 1) % max;
	dedup_t *d = &s->dedup[i];
	char *old = d->key;
	if (old != NULL)
		dedup_unlink(s, i);
	d->key = rc->dedup_key;
	rc->dedup_key = NULL;
	d->hash = rc->hash;
	DASSERT(d->hash == key_hash(d->key));
	d->partition = rc->partition;
	d->offset = rc->offset;
	d->at_ms = now;
	int32_t *b = &s->buckets[d->hash & (s->nbuckets - 1)];
	d->chain = *b;
	*b = i;
	return old;
}

/* The bucket of hash h, fetched into the cache ahead of dedup_lookup (a miss each in a table of millions). */
static void dedup_prefetch(const http_server_t *s, uint64_t h)
{
	if (s->nbuckets > 0)
		__builtin_prefetch(&s->buckets[h & (s->nbuckets - 1)]);
}

/* A durable receipt for key (hash h) within the window: copied to out, true. */
static bool dedup_lookup(http_server_t *s, const char *key, uint64_t h, receipt_t *out)
{
	if (s->nbuckets == 0)
		return false;
	int64_t now = clock_wall_ms(clock_system());
	bool found = false;
	pthread_mutex_lock(&s->mu);
	for (int32_t i = s->buckets[h & (s->nbuckets - 1)], guard = 0; i >= 0 && !found && guard < (1 << 30);
	     i = s->dedup[i].chain, guard++) {
		dedup_t *d = &s->dedup[i];
		if (d->hash == h && now - d->at_ms <= s->opts.dedup_window_ms && strcmp(d->key, key) == 0) {
			const char *topic = d->key + strlen(d->key) + 1;
			memcpy(out->topic, topic, strnlen(topic, TOPIC_NAME_MAX) + 1);
			out->partition = d->partition;
			out->offset = d->offset;
			found = true;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return found;
}

static void route_produce(hreq_t *r, const char *tname)
{
	http_server_t *s = r->srv;
	topic_t *t = storage_topic_get(s->st, tname);
	if (t == NULL) {
		reply_error(r, 404, "unknown_topic", "no such topic (create it with POST /v1/topics)");
		return;
	}
	events_t evs = { 0 };
	int status;
	const char *why = parse_events(r, &evs, &status);
	for (int i = 0; why == NULL && i < evs.n; i++)
		why = ce_validate(&evs.v[i]);
	int32_t nparts = topic_partition_count(t);
	if (why != NULL) {
		reply_error(r, status, status == 415 ? "unsupported_media_type" : "invalid_event", why);
		goto out;
	}
	r->receipts = calloc((size_t)evs.n, sizeof *r->receipts);
	r->nreceipts = evs.n;
	/* Repeats inside this request: an open-addressing table of first occurrences (indexes), 2x the events.
	 * It and the partitioning below share one scratch allocation: part_of[n], seen[tcap], first_of and
	 * fill[nparts + 1] each, order[n + 1]. */
	size_t tcap = 16;
	while (tcap < (size_t)evs.n * 2)
		tcap <<= 1;
	int32_t *scratch = malloc(((size_t)evs.n * 2 + 1 + tcap + ((size_t)nparts + 1) * 2) * sizeof *scratch);
	ASSERT(r->receipts != NULL && scratch != NULL);
	int32_t *part_of = scratch, *seen = part_of + evs.n, *first_of = seen + tcap;
	int32_t *fill = first_of + nparts + 1, *order = fill + nparts + 1;
	memset(seen, 0xff, tcap * sizeof *seen); /* -1: empty */
	/* Keys and hashes first, each bucket prefetched, so a batch's lookups do not wait on one miss each. */
	char **keys = malloc((size_t)evs.n * (sizeof *keys + sizeof(uint64_t)));
	ASSERT(keys != NULL);
	uint64_t *hashes = (uint64_t *)(void *)(keys + evs.n);
	for (int i = 0; i < evs.n; i++) {
		const char *src = ce_get(&evs.v[i], "source"), *id = ce_get(&evs.v[i], "id");
		size_t sl = strlen(src), il = strlen(id), tl = strnlen(tname, TOPIC_NAME_MAX);
		char *key = malloc(sl + il + tl + 3);
		ASSERT(key != NULL);
		memcpy(key, src, sl);
		key[sl] = '\n';
		memcpy(key + sl + 1, id, il + 1);
		memcpy(key + sl + il + 2, tname, tl);
		key[sl + il + 2 + tl] = 0;
		keys[i] = key;
		hashes[i] = key_hash(key);
		dedup_prefetch(s, hashes[i]);
	}
	for (int i = 0; i < evs.n; i++) {
		receipt_t *rc = &r->receipts[i];
		char *key = keys[i];
		if (dedup_lookup(s, key, hashes[i], rc)) {
			rc->dup = true;
			atomic_fetch_add(&s->dups, 1);
			part_of[i] = -1;
			free(key);
			continue;
		}
		/* A repeat inside this same request is a duplicate of its first occurrence. */
		size_t slot = (size_t)hashes[i] & (tcap - 1);
		while (seen[slot] >= 0 && strcmp(r->receipts[seen[slot]].dedup_key, key) != 0)
			slot = (slot + 1) & (tcap - 1);
		if (seen[slot] >= 0) {
			rc->dup = true;
			part_of[i] = -2 - seen[slot];
			free(key);
			continue;
		}
		seen[slot] = i;
		rc->dedup_key = key;
		rc->hash = hashes[i];
		memcpy(rc->topic, tname, strnlen(tname, TOPIC_NAME_MAX)); /* calloc'd: stays terminated */
		const char *pk = ce_get(&evs.v[i], "partitionkey");
		part_of[i] = pk ? ce_partition_for_key(slice_cstr(pk), nparts)
				: (int32_t)(atomic_fetch_add(&s->rr, 1) % (uint64_t)nparts);
	}
	free(keys);
	/* The events of each partition, in event order (a counting sort: O(events + partitions)). */
	memset(first_of, 0, ((size_t)nparts + 1) * sizeof *first_of);
	for (int i = 0; i < evs.n; i++)
		if (part_of[i] >= 0)
			first_of[part_of[i] + 1]++;
	for (int32_t p = 0; p < nparts; p++)
		first_of[p + 1] += first_of[p];
	memcpy(fill, first_of, ((size_t)nparts + 1) * sizeof *fill);
	for (int i = 0; i < evs.n; i++)
		if (part_of[i] >= 0)
			order[fill[part_of[i]]++] = i;
	/* One batch per partition, in event order; a waiter per batch (at most one per event). */
	r->waits = calloc((unsigned)(evs.n < nparts ? evs.n : nparts), sizeof *r->waits);
	ASSERT(r->waits != NULL);
	err_t err = OK;
	int64_t now = clock_wall_ms(clock_system());
	pthread_mutex_lock(&r->mu);
	for (int32_t p = 0; p < nparts && err == OK; p++) {
		rb_builder_t b;
		int cnt = 0;
		if (first_of[p] == first_of[p + 1])
			continue;
		rb_builder_init(&b, -1, -1, -1);
		for (int32_t k = first_of[p]; k < first_of[p + 1]; k++) {
			int i = order[k];
			slice_t key, value;
			ce_kv_t ceh[CE_ATTRS_MAX];
			rb_kv_t hdrs[CE_ATTRS_MAX];
			char names[CE_ATTRS_MAX][32];
			int nh = ce_to_record(&evs.v[i], &key, &value, ceh, names, CE_ATTRS_MAX);
			for (int h = 0; h < nh; h++)
				hdrs[h] = (rb_kv_t){ .key = ceh[h].key, .value = ceh[h].value, .value_null = false };
			rb_builder_add(&b, now, key, value, hdrs, nh);
			cnt++;
		}
		if (cnt > 0) {
			rb_builder_finish(&b);
			partition_t *part = topic_partition(t, p, NULL);
			hwait_t *hw = &r->waits[r->nwaits];
			hw->req = r;
			hw->w.cb = on_durable;
			partition_append_t res;
			err = part ? partition_append(part, b.buf.data, b.buf.len, &hw->w, &res) : ERR_FAILED;
			if (err == OK) {
				if (!res.ack_now) {
					r->nwaits++;
					r->remaining++;
					atomic_fetch_add(&r->refs, 1); /* released by on_durable */
				}
				int64_t off = res.base_offset;
				for (int32_t k = first_of[p]; k < first_of[p + 1]; k++) {
					r->receipts[order[k]].partition = p;
					r->receipts[order[k]].offset = off++;
				}
			}
		}
		rb_builder_free(&b);
	}
	pthread_mutex_unlock(&r->mu);
	for (int i = 0; i < evs.n; i++)
		if (part_of[i] <= -2) { /* copy the first occurrence's receipt */
			receipt_t *first = &r->receipts[-2 - part_of[i]];
			memcpy(r->receipts[i].topic, first->topic, sizeof first->topic);
			r->receipts[i].partition = first->partition;
			r->receipts[i].offset = first->offset;
		}
	free(scratch);
	if (err != OK) {
		/* Batches already appended are waited for by nobody: refuse the request as a whole. */
		reply_error(r, status_for(err), err == ERR_TOO_LARGE ? "too_large" : "append_failed", err_str(err));
		pthread_mutex_lock(&r->mu);
		r->finish = NULL;
		pthread_mutex_unlock(&r->mu);
		goto out;
	}
	atomic_fetch_add(&s->events_in, (uint64_t)evs.n);
	r->finish = produce_finish;
	r->produce = true;
out:
	for (int i = 0; i < evs.n; i++)
		ce_event_free(&evs.v[i]);
	free(evs.v);
	topic_put(t);
}

/* ---------------------------------------------------------------- read */

typedef struct {
	json_t *arr;
	const char *topic;
	int32_t partition;
	int64_t from, limit, next;
} read_ctx_t;

/* A stored record as a JSON CloudEvent: its raw headers walked into the event module's form. */
static json_t *record_json(const rb_record_t *rec, int64_t ts, const char *topic, int32_t partition, int64_t offset)
{
	ce_kv_t hdrs[64];
	int n = 0;
	reader_t hr = reader_make(rec->headers.ptr, rec->headers.len);
	for (int32_t i = 0; i < rec->headers_count && n < 64; i++) {
		rb_record_header_next(&hr, &hdrs[n].key, &hdrs[n].value, &hdrs[n].value_null);
		if (hr.err != OK)
			break;
		n++;
	}
	ce_kafka_record_t k = { .topic = topic, .partition = partition, .offset = offset, .timestamp = ts,
				.key = rec->key, .value = rec->value, .key_null = rec->key_null,
				.value_null = rec->value_null, .headers = hdrs, .nheaders = n };
	return ce_record_to_json(&k);
}

static int read_record(void *arg_, const rb_header_t *h, const rb_record_t *rec, int64_t offset, int64_t ts)
{
	(void)h;
	read_ctx_t *c = arg_;
	if (offset < c->from)
		return 0;
	if ((int64_t)json_array_size(c->arr) >= c->limit)
		return 1;
	json_array_append_new(c->arr, record_json(rec, ts, c->topic, c->partition, offset));
	c->next = offset + 1;
	return 0;
}

static void route_read(hreq_t *r, const char *tname, const char *pstr)
{
	storage_t *st = r->srv->st;
	char *end;
	long pidx = strtol(pstr, &end, 10);
	topic_t *t = storage_topic_get(st, tname);
	partition_t *p = t && *end == 0 ? topic_partition(t, (int32_t)pidx, NULL) : NULL;
	if (p == NULL) {
		reply_error(r, 404, "unknown_partition", "no such topic or partition");
		topic_put(t);
		return;
	}
	partition_info_t info;
	partition_info(p, &info);
	int64_t from = info.log_start, limit = 100;
	if ((arg(r, "from") && !arg_i64(r, "from", 0, INT64_MAX, &from)) ||
	    (arg(r, "limit") && !arg_i64(r, "limit", 1, READ_LIMIT_MAX, &limit))) {
		reply_error(r, 400, "bad_request", "from must be an offset >= 0 and limit 1 to 10000");
		topic_put(t);
		return;
	}
	if (from < info.log_start || from > info.hwm) {
		reply_json(r, 416, json_pack("{s:s,s:s,s:I,s:I}", "error", "offset_out_of_range", "message",
					     "from must lie between log_start and high_watermark", "log_start",
					     (json_int_t)info.log_start, "high_watermark", (json_int_t)info.hwm));
		topic_put(t);
		return;
	}
	read_ctx_t rctx = { json_array(), tname, (int32_t)pidx, from, limit, from };
	int64_t off = from;
	buf_t b = { 0 }, dec = { 0 };
	err_t rc = OK;
	while (rc == OK && off < info.hwm && (int64_t)json_array_size(rctx.arr) < limit) {
		log_range_t lr;
		rc = partition_read(p, off, 1 << 20, &lr);
		if (rc != OK || lr.len == 0) {
			log_range_release(&lr);
			break;
		}
		b.len = 0;
		buf_reserve(&b, (size_t)lr.len);
		rc = log_range_copy(&lr, io_posix(), b.data);
		if (rc == OK)
			rc = codec_walk_records(b.data, (size_t)lr.len, &dec, read_record, &rctx);
		off = lr.next_offset;
		log_range_release(&lr);
	}
	json_t *arr = rctx.arr;
	int64_t next = rctx.next;
	buf_free(&b);
	buf_free(&dec);
	topic_put(t);
	if (rc != OK) {
		json_decref(arr);
		reply_error(r, status_for(rc), "read_failed", err_str(rc));
		return;
	}
	snprintf(r->next_offset, sizeof r->next_offset, "%" PRId64, next);
	reply_json(r, 200, arr);
	r->ctype = "application/cloudevents-batch+json";
}

/* ---------------------------------------------------------------- read-your-writes wait */

static void wait_finish(hreq_t *r)
{
	if (r->timed_out)
		reply_json(r, 408, json_pack("{s:s,s:s,s:I}", "error", "timeout", "message",
					     "the group has not committed past that offset yet", "committed",
					     (json_int_t)storage_committed_offset(r->srv->st, r->cw_group, r->cw_topic,
										  r->cw.partition)));
	else
		reply_json(r, 200, json_pack("{s:b,s:I}", "caught_up", 1, "committed", (json_int_t)r->committed));
}

static void wait_timer_unlink(hreq_t *r)
{
	http_server_t *s = r->srv;
	if (r->wt_prev)
		r->wt_prev->wt_next = r->wt_next;
	else
		s->wait_timers = r->wt_next;
	if (r->wt_next)
		r->wt_next->wt_prev = r->wt_prev;
	r->wt_prev = r->wt_next = NULL;
}

/* Timer thread: the commit came first; the timer's reference goes now rather than at the timeout. */
static void cancel_wait_timer(loop_task_t *task)
{
	hreq_t *r = task->data;
	if (r->tstate == 1) {
		loop_timer_stop(r->srv->timers, &r->timer);
		wait_timer_unlink(r);
		r->tstate = 2;
		hreq_unref(r); /* the timer's reference */
	} else if (r->tstate == 0) {
		r->tstate = 2; /* start_wait_timer, still queued, drops the timer's reference */
	}
	hreq_unref(r); /* on_committed's reference */
}

static void on_committed(commit_waiter_t *w, int64_t committed)
{
	hreq_t *r = w->arg;
	if (atomic_exchange(&r->claimed, true))
		return;
	r->committed = committed;
	atomic_fetch_add(&r->refs, 1); /* keeps r until cancel_wait_timer ran */
	complete_one(r);
	r->cancel_task.cb = cancel_wait_timer;
	r->cancel_task.data = r;
	loop_post(r->srv->timers, &r->cancel_task);
}

static void on_wait_timer(loop_timer_t *t)
{
	hreq_t *r = t->data;
	wait_timer_unlink(r);
	r->tstate = 2;
	if (storage_cancel_commit_wait(r->srv->st, &r->cw) && !atomic_exchange(&r->claimed, true)) {
		r->timed_out = true;
		complete_one(r);
	}
	hreq_unref(r); /* the timer's reference */
}

static void start_wait_timer(loop_task_t *task)
{
	hreq_t *r = task->data;
	if (r->tstate == 2) { /* the commit came first and cancelled it */
		hreq_unref(r);
		return;
	}
	r->tstate = 1;
	r->wt_prev = NULL;
	r->wt_next = r->srv->wait_timers;
	if (r->wt_next)
		r->wt_next->wt_prev = r;
	r->srv->wait_timers = r;
	r->timer.cb = on_wait_timer;
	r->timer.data = r;
	loop_timer_start(r->srv->timers, &r->timer, r->wait_ms);
}

static void route_wait(hreq_t *r, const char *group)
{
	int64_t part, offset, timeout = 30000;
	const char *topic = arg(r, "topic");
	if (topic == NULL || !arg_i64(r, "partition", 0, INT32_MAX, &part) ||
	    !arg_i64(r, "offset", 0, INT64_MAX, &offset) ||
	    (arg(r, "timeout_ms") && !arg_i64(r, "timeout_ms", 0, r->srv->opts.wait_max_ms, &timeout))) {
		reply_error(r, 400, "bad_request",
			    "expected ?topic=T&partition=P&offset=O[&timeout_ms=N] (timeout_ms at most wait_max_ms)");
		return;
	}
	r->cw_group = strdup(group);
	r->cw_topic = strdup(topic);
	r->cw.group = r->cw_group;
	r->cw.topic = r->cw_topic;
	r->cw.partition = (int32_t)part;
	r->cw.offset = offset;
	r->cw.cb = on_committed;
	r->cw.arg = r;
	r->finish = wait_finish;
	pthread_mutex_lock(&r->mu);
	if (storage_wait_commit(r->srv->st, &r->cw) == 1) {
		r->committed = storage_committed_offset(r->srv->st, group, topic, (int32_t)part);
		atomic_store(&r->claimed, true);
	} else {
		r->remaining++;
		r->wait_ms = timeout;
		atomic_fetch_add(&r->refs, 1); /* for the timer */
		r->task.cb = start_wait_timer;
		r->task.data = r;
		loop_post(r->srv->timers, &r->task);
	}
	pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- health and metrics */

typedef struct {
	char topic[TOPIC_NAME_MAX + 1];
	int32_t partition;
	partition_info_t info;
} mrow_t;

typedef struct {
	storage_t *st;
	mrow_t *rows;
	size_t n, cap;
} metrics_ctx_t;

static void metrics_topic(void *arg_, const char *name)
{
	metrics_ctx_t *m = arg_;
	topic_t *t = storage_topic_get(m->st, name);
	if (t == NULL)
		return;
	for (int32_t i = 0; i < topic_partition_count(t); i++) {
		partition_t *p = topic_partition(t, i, NULL);
		if (p == NULL)
			continue;
		if (m->n == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 64;
			m->rows = realloc(m->rows, m->cap * sizeof *m->rows);
			ASSERT(m->rows != NULL);
		}
		mrow_t *row = &m->rows[m->n++];
		memcpy(row->topic, name, strnlen(name, TOPIC_NAME_MAX) + 1);
		row->partition = i;
		partition_info(p, &row->info);
	}
	topic_put(t);
}

/* One metric family: its HELP and TYPE, then a sample per partition (families stay contiguous). */
static void metrics_family(buf_t *b, const metrics_ctx_t *m, const char *name, const char *type, const char *help,
			   int field)
{
	char line[600];
	int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	buf_append(b, line, (size_t)n);
	for (size_t i = 0; i < m->n; i++) {
		const partition_info_t *in = &m->rows[i].info;
		int64_t v = field == 0 ? in->hwm : field == 1 ? in->log_start : field == 2 ? in->size_bytes : in->flushes;
		n = snprintf(line, sizeof line, "%s{topic=\"%s\",partition=\"%d\"} %" PRId64 "\n", name, m->rows[i].topic,
			     m->rows[i].partition, v);
		buf_append(b, line, (size_t)n);
	}
}

typedef struct {
	const metrics_ctx_t *m;
	buf_t *b;
	bool lag; /* second pass: lag; first: committed offsets */
} lag_ctx_t;

static void metrics_commit(void *arg_, const char *group, const char *topic, int32_t partition, int64_t offset)
{
	lag_ctx_t *c = arg_;
	char line[800];
	int64_t v = offset;
	if (c->lag) {
		v = -1;
		for (size_t i = 0; i < c->m->n; i++)
			if (c->m->rows[i].partition == partition && strcmp(c->m->rows[i].topic, topic) == 0)
				v = c->m->rows[i].info.hwm > offset ? c->m->rows[i].info.hwm - offset : 0;
		if (v < 0)
			return; /* the topic is gone */
	}
	int n = snprintf(line, sizeof line, "%s{group=\"%s\",topic=\"%s\",partition=\"%d\"} %" PRId64 "\n",
			 c->lag ? "factlog_group_lag_records" : "factlog_group_committed_offset", group, topic,
			 partition, v);
	if (n > 0 && (size_t)n < sizeof line)
		buf_append(c->b, line, (size_t)n);
}

/* One histogram series; help != NULL writes the family's HELP and TYPE first; labels may be NULL. */
static void metrics_hist(buf_t *b, const char *name, const char *help, const char *labels, stats_hist_t *h)
{
	char t[512];
	int n;
	if (help != NULL) {
		n = snprintf(t, sizeof t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
		buf_append(b, t, (size_t)n);
	}
	const char *sep = labels ? "," : "";
	labels = labels ? labels : "";
	uint64_t count = atomic_load(&h->count);
	for (int i = 0; i < STATS_FSYNC_BUCKETS; i++) {
		if (i + 1 < STATS_FSYNC_BUCKETS)
			n = snprintf(t, sizeof t, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
				     storage_fsync_bucket_le[i], (uint64_t)atomic_load(&h->bucket[i]));
		else
			n = snprintf(t, sizeof t, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, count);
		buf_append(b, t, (size_t)n);
	}
	const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
	n = snprintf(t, sizeof t, "%s_sum%s%s%s %.9f\n%s_count%s%s%s %" PRIu64 "\n", name, open, labels, close,
		     (double)atomic_load(&h->ns_sum) / 1e9, name, open, labels, close, count);
	buf_append(b, t, (size_t)n);
}

/* Storage-wide counters, the latency histograms, connections and group lag. */
static void metrics_storage(buf_t *b, http_server_t *s, const metrics_ctx_t *m)
{
	storage_stats_t *ss = storage_stats(s->st);
	char t[4096];
	int n = snprintf(t, sizeof t,
			 "# HELP factlog_appends_total Batches appended (Kafka and HTTP).\n"
			 "# TYPE factlog_appends_total counter\nfactlog_appends_total %" PRIu64 "\n"
			 "# HELP factlog_append_bytes_total Bytes of batches appended.\n"
			 "# TYPE factlog_append_bytes_total counter\nfactlog_append_bytes_total %" PRIu64 "\n"
			 "# HELP factlog_append_records_total Records appended.\n"
			 "# TYPE factlog_append_records_total counter\nfactlog_append_records_total %" PRIu64 "\n"
			 "# HELP factlog_kafka_fetches_total Kafka Fetch responses.\n"
			 "# TYPE factlog_kafka_fetches_total counter\nfactlog_kafka_fetches_total %" PRIu64 "\n"
			 "# HELP factlog_kafka_fetch_bytes_total Record bytes sent in Kafka Fetch responses.\n"
			 "# TYPE factlog_kafka_fetch_bytes_total counter\nfactlog_kafka_fetch_bytes_total %" PRIu64 "\n"
			 "# HELP factlog_kafka_connections Open Kafka protocol connections.\n"
			 "# TYPE factlog_kafka_connections gauge\nfactlog_kafka_connections %" PRId64 "\n",
			 (uint64_t)atomic_load(&ss->appends), (uint64_t)atomic_load(&ss->append_bytes),
			 (uint64_t)atomic_load(&ss->append_records), (uint64_t)atomic_load(&ss->fetches),
			 (uint64_t)atomic_load(&ss->fetch_bytes), (int64_t)atomic_load(&ss->kafka_connections));
	buf_append(b, t, (size_t)n);
	metrics_hist(b, "factlog_fsync_duration_seconds", "Group-commit fsync rounds (one partition each).", NULL,
		     &ss->fsync);
	metrics_hist(b, "factlog_kafka_produce_duration_seconds",
		     "Kafka Produce requests, from the whole request read to its answer ready (acks=all: durable).",
		     "acks=\"1\"", &ss->kafka_produce[0]);
	metrics_hist(b, "factlog_kafka_produce_duration_seconds", NULL, "acks=\"all\"", &ss->kafka_produce[1]);
	metrics_hist(b, "factlog_http_produce_duration_seconds",
		     "HTTP produce requests answered 2xx, from their headers in to their durable receipts out.", NULL,
		     &ss->http_produce);
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	n = snprintf(t, sizeof t,
		     "# HELP factlog_http_connections Open HTTP connections.\n"
		     "# TYPE factlog_http_connections gauge\nfactlog_http_connections %u\n"
		     "# HELP factlog_group_committed_offset The offset a consumer group committed.\n"
		     "# TYPE factlog_group_committed_offset gauge\n",
		     di ? di->num_connections : 0u);
	buf_append(b, t, (size_t)n);
	lag_ctx_t lc = { m, b, false };
	storage_commits_each(s->st, metrics_commit, &lc);
	const char *lag_head = "# HELP factlog_group_lag_records Records between a group's commit and the high watermark.\n"
			       "# TYPE factlog_group_lag_records gauge\n";
	buf_append(b, lag_head, strlen(lag_head));
	lc.lag = true;
	storage_commits_each(s->st, metrics_commit, &lc);
}

static void route_metrics(hreq_t *r)
{
	http_server_t *s = r->srv;
	buf_t b = { 0 };
	char head[2048];
	int n = snprintf(head, sizeof head,
			 "# HELP factlog_http_requests_total HTTP requests handled.\n"
			 "# TYPE factlog_http_requests_total counter\n"
			 "factlog_http_requests_total %" PRIuFAST64 "\n"
			 "# HELP factlog_http_client_errors_total HTTP responses with a 4xx status.\n"
			 "# TYPE factlog_http_client_errors_total counter\n"
			 "factlog_http_client_errors_total %" PRIuFAST64 "\n"
			 "# HELP factlog_http_server_errors_total HTTP responses with a 5xx status.\n"
			 "# TYPE factlog_http_server_errors_total counter\n"
			 "factlog_http_server_errors_total %" PRIuFAST64 "\n"
			 "# HELP factlog_http_events_total CloudEvents accepted over HTTP.\n"
			 "# TYPE factlog_http_events_total counter\n"
			 "factlog_http_events_total %" PRIuFAST64 "\n"
			 "# HELP factlog_http_duplicate_events_total Events answered from the (source, id) window.\n"
			 "# TYPE factlog_http_duplicate_events_total counter\n"
			 "factlog_http_duplicate_events_total %" PRIuFAST64 "\n",
			 atomic_load(&s->requests), atomic_load(&s->errors_4xx), atomic_load(&s->errors_5xx),
			 atomic_load(&s->events_in), atomic_load(&s->dups));
	buf_append(&b, head, (size_t)n);
	metrics_ctx_t m = { s->st, NULL, 0, 0 };
	storage_topic_names(s->st, metrics_topic, &m);
	metrics_family(&b, &m, "factlog_partition_high_watermark", "gauge", "The next offset readers will see.", 0);
	metrics_family(&b, &m, "factlog_partition_log_start_offset", "gauge", "The first offset retained.", 1);
	metrics_family(&b, &m, "factlog_partition_size_bytes", "gauge", "Bytes of batches on disk.", 2);
	metrics_family(&b, &m, "factlog_partition_fsyncs_total", "counter",
		       "Group-commit fsyncs that made data durable.", 3);
	metrics_storage(&b, s, &m);
	free(m.rows);
	if (s->opts.ext != NULL) { /* the functions' metrics, when a runtime is wired in */
		http_ext_req_t er = { .method = "GET", .path = "/metrics", .opaque = r };
		http_ext_reply_t out = { 0 };
		s->opts.ext(s->opts.ext_ctx, &er, &out);
		if (out.status == 200 && out.text != NULL)
			buf_append(&b, out.text, strlen(out.text));
		free(out.text);
		json_decref(out.json);
	}
	buf_put_u8(&b, 0);
	r->status = 200;
	r->out = (char *)b.data; /* owned by r now */
	r->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

/* ---------------------------------------------------------------- live tail (Server-Sent Events) */

#define SSE_PARTS_MAX 1024
#define SSE_KEEPALIVE_MS 10000

struct sse {
	http_server_t *srv;
	struct MHD_Connection *mc;
	sse_t *next;
	char topic[TOPIC_NAME_MAX + 1];
	int32_t nparts;
	int32_t parts[SSE_PARTS_MAX];
	int64_t cursor[SSE_PARTS_MAX]; /* next offset per selected partition */
	buf_t out;
	size_t out_off;
	int64_t last_write_ms;
	pthread_mutex_t mu;
	bool suspended, dirty, closed;
};

static void sse_cursor(const sse_t *x, buf_t *b)
{
	for (int32_t i = 0; i < x->nparts; i++) {
		char t[48];
		int n = snprintf(t, sizeof t, "%s%" PRId32 ":%" PRId64, i ? "," : "", x->parts[i], x->cursor[i]);
		buf_append(b, t, (size_t)n);
	}
}

typedef struct {
	sse_t *x;
	int32_t i; /* index into x->parts */
	int sent;
} sse_walk_t;

static void sse_cursor(const sse_t *x, buf_t *b);

/* One record of a live tail: formatted as an SSE event whose id is the cursor after it. */
static int sse_record(void *arg_, const rb_header_t *h, const rb_record_t *rec, int64_t offset, int64_t ts)
{
	(void)h;
	sse_walk_t *w = arg_;
	sse_t *x = w->x;
	if (offset < x->cursor[w->i])
		return 0;
	json_t *ev = record_json(rec, ts, x->topic, x->parts[w->i], offset);
	char *js = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	x->cursor[w->i] = offset + 1;
	buf_append(&x->out, "id: ", 4);
	sse_cursor(x, &x->out);
	buf_append(&x->out, "\nevent: cloudevent\ndata: ", 25);
	buf_append(&x->out, js, strlen(js));
	buf_append(&x->out, "\n\n", 2);
	free(js);
	w->sent++;
	return 0;
}

/* Appends up to `budget` events after the cursor; returns how many. */
static int sse_fill(sse_t *x, int budget)
{
	topic_t *t = storage_topic_get(x->srv->st, x->topic);
	if (t == NULL) {
		x->closed = true; /* the topic was deleted */
		return 0;
	}
	int sent = 0;
	buf_t b = { 0 }, dec = { 0 };
	for (int32_t i = 0; i < x->nparts && sent < budget; i++) {
		partition_t *p = topic_partition(t, x->parts[i], NULL);
		if (p == NULL)
			continue;
		log_range_t lr;
		if (partition_read(p, x->cursor[i], 256 * 1024, &lr) != OK || lr.len == 0) {
			log_range_release(&lr);
			continue;
		}
		b.len = 0;
		buf_reserve(&b, (size_t)lr.len);
		sse_walk_t w = { x, i, 0 };
		if (log_range_copy(&lr, io_posix(), b.data) == OK)
			codec_walk_records(b.data, (size_t)lr.len, &dec, sse_record, &w);
		sent += w.sent;
		x->cursor[i] = lr.next_offset > x->cursor[i] ? lr.next_offset : x->cursor[i];
		log_range_release(&lr);
	}
	buf_free(&b);
	buf_free(&dec);
	topic_put(t);
	return sent;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	sse_t *x = cls;
	for (int round = 0; round < 8; round++) {
		if (x->out_off < x->out.len) {
			size_t n = x->out.len - x->out_off < max ? x->out.len - x->out_off : max;
			memcpy(buf, x->out.data + x->out_off, n);
			x->out_off += n;
			if (x->out_off == x->out.len)
				x->out.len = x->out_off = 0;
			x->last_write_ms = loop_now_ns() / 1000000;
			return (ssize_t)n;
		}
		pthread_mutex_lock(&x->mu);
		bool closed = x->closed || x->srv->stopping;
		x->dirty = false;
		pthread_mutex_unlock(&x->mu);
		if (closed)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (sse_fill(x, 500) > 0)
			continue;
		if (loop_now_ns() / 1000000 - x->last_write_ms >= SSE_KEEPALIVE_MS) {
			buf_append(&x->out, ": keepalive\n\n", 13);
			continue;
		}
		pthread_mutex_lock(&x->mu);
		if (x->dirty) { /* data arrived while we looked */
			pthread_mutex_unlock(&x->mu);
			continue;
		}
		x->suspended = true;
		MHD_suspend_connection(x->mc);
		pthread_mutex_unlock(&x->mu);
		return 0;
	}
	return 0; /* busy: MHD calls again */
}

static void sse_free(void *cls)
{
	sse_t *x = cls;
	http_server_t *s = x->srv;
	pthread_mutex_lock(&s->mu);
	for (sse_t **pp = &s->streams; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	pthread_mutex_unlock(&s->mu);
	buf_free(&x->out);
	pthread_mutex_destroy(&x->mu);
	free(x);
}

/* Wakes every stream (new data, a keepalive round, or shutdown). */
static void sse_wake_all(http_server_t *s)
{
	pthread_mutex_lock(&s->mu);
	for (sse_t *x = s->streams; x != NULL; x = x->next) {
		pthread_mutex_lock(&x->mu);
		x->dirty = true;
		if (x->suspended) {
			x->suspended = false;
			MHD_resume_connection(x->mc);
		}
		pthread_mutex_unlock(&x->mu);
	}
	pthread_mutex_unlock(&s->mu);
}

void http_server_notify_data(http_server_t *s)
{
	sse_wake_all(s);
}

static void on_keepalive(loop_timer_t *t)
{
	http_server_t *s = t->data;
	sse_wake_all(s); /* streams idle this long write a comment, which also detects dead clients */
	loop_timer_start(s->timers, &s->keepalive, SSE_KEEPALIVE_MS / 2);
}

static void route_tail(hreq_t *r, const char *tname)
{
	http_server_t *s = r->srv;
	topic_t *t = storage_topic_get(s->st, tname);
	if (t == NULL) {
		reply_error(r, 404, "unknown_topic", "no such topic");
		return;
	}
	sse_t *x = calloc(1, sizeof *x);
	ASSERT(x != NULL);
	x->srv = s;
	x->mc = r->mc;
	memcpy(x->topic, tname, strnlen(tname, TOPIC_NAME_MAX));
	pthread_mutex_init(&x->mu, NULL);
	int32_t n = topic_partition_count(t);
	const char *sel = arg(r, "partitions"), *from = arg(r, "from");
	const char *last = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Last-Event-ID");
	bool bad = from && strcmp(from, "earliest") != 0 && strcmp(from, "latest") != 0;
	for (int32_t i = 0; i < n && !sel && x->nparts < SSE_PARTS_MAX; i++)
		x->parts[x->nparts++] = i;
	for (const char *p = sel; p && *p && !bad;) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 0 || v >= n || x->nparts == SSE_PARTS_MAX)
			bad = true;
		else
			x->parts[x->nparts++] = (int32_t)v;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != 0)
			bad = true;
	}
	for (int32_t i = 0; i < x->nparts && !bad; i++) {
		partition_info_t in;
		partition_t *p = topic_partition(t, x->parts[i], NULL);
		if (p == NULL) {
			bad = true;
			break;
		}
		partition_info(p, &in);
		x->cursor[i] = from && strcmp(from, "earliest") == 0 ? in.log_start : in.hwm;
	}
	/* Resume: the last event's id is the cursor after it. */
	for (const char *p = last; p && *p && !bad;) {
		char *end;
		long part = strtol(p, &end, 10);
		if (*end != ':') {
			bad = true;
			break;
		}
		long long off = strtoll(end + 1, &end, 10);
		for (int32_t i = 0; i < x->nparts; i++)
			if (x->parts[i] == part && off >= 0)
				x->cursor[i] = off;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != 0)
			bad = true;
	}
	topic_put(t);
	if (bad || x->nparts == 0) {
		pthread_mutex_destroy(&x->mu);
		free(x);
		reply_error(r, 400, "bad_request",
			    "partitions=P,P... (existing partitions), from=earliest|latest, Last-Event-ID P:OFFSET,...");
		return;
	}
	x->last_write_ms = loop_now_ns() / 1000000;
	buf_append(&x->out, ": factlog live tail\n\n", 21); /* sent at once: the client knows it is connected */
	pthread_mutex_lock(&s->mu);
	x->next = s->streams;
	s->streams = x;
	pthread_mutex_unlock(&s->mu);
	r->sse = x;
}

/* ---------------------------------------------------------------- routing */

static void route(hreq_t *r, const char *url, const char *method)
{
	char a[TOPIC_NAME_MAX + 2], b[TOPIC_NAME_MAX + 2], c[64], d[64];
	const char *p = url;
	if (r->too_large) {
		reply_error(r, 413, "body_too_large", "the request body exceeds the configured limit");
		return;
	}
	if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0) {
		reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
		return;
	}
	if (strcmp(url, "/metrics") == 0) {
		route_metrics(r);
		return;
	}
	if (strncmp(p, "/v1/topics", 10) == 0 && (p[10] == 0 || p[10] == '/')) {
		p += 10;
		if (*p == 0) {
			route_topics(r, method, NULL);
			return;
		}
		if (!path_seg(&p, a, sizeof a)) {
			reply_error(r, 404, "not_found", "no such route");
			return;
		}
		if (*p == 0) {
			route_topics(r, method, a);
			return;
		}
		if (strcmp(p, "/events") == 0) {
			const char *accept = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Accept");
			if (strcmp(method, "POST") == 0)
				route_produce(r, a);
			else if (strcmp(method, "GET") == 0 && accept && strstr(accept, "text/event-stream"))
				route_tail(r, a);
			else if (strcmp(method, "GET") != 0)
				reply_error(r, 405, "method_not_allowed",
					    "POST events here, or GET with Accept: text/event-stream for a live tail");
			else
				reply_error(r, 406, "not_acceptable",
					    "POST events here, or GET with Accept: text/event-stream for a live tail; "
					    "read a range with GET /v1/topics/{topic}/partitions/{p}/events");
			return;
		}
		if (path_seg(&p, b, sizeof b) && strcmp(b, "partitions") == 0 && path_seg(&p, c, sizeof c) &&
		    path_seg(&p, d, sizeof d) && strcmp(d, "events") == 0 && *p == 0) {
			if (strcmp(method, "GET") != 0)
				reply_error(r, 405, "method_not_allowed", "use GET");
			else
				route_read(r, a, c);
			return;
		}
	} else if (strncmp(p, "/v1/groups", 10) == 0) {
		p += 10;
		if (path_seg(&p, a, sizeof a) && strcmp(p, "/wait") == 0) {
			if (strcmp(method, "GET") != 0)
				reply_error(r, 405, "method_not_allowed", "use GET");
			else
				route_wait(r, a);
			return;
		}
	}
	if (r->srv->opts.ext != NULL) {
		http_ext_req_t er = { .method = method, .path = url, .body = r->body.data, .body_len = r->body.len,
				      .opaque = r,
				      .content_type = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND,
										  "Content-Type") };
		http_ext_reply_t out = { 0 };
		r->srv->opts.ext(r->srv->opts.ext_ctx, &er, &out);
		if (out.status != 0) {
			if (out.json != NULL) {
				reply_json(r, out.status, out.json);
			} else {
				r->status = out.status;
				r->out = out.text ? out.text : strdup("");
				r->ctype = "text/plain; charset=utf-8";
			}
			return;
		}
	}
	reply_error(r, 404, "not_found", "no such route (see docs/http.md)");
}

const char *http_ext_arg(const http_ext_req_t *req, const char *name)
{
	return arg(req->opaque, name);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	(void)version;
	http_server_t *s = cls;
	hreq_t *r = *con_cls;
	if (r == NULL) {
		r = calloc(1, sizeof *r);
		ASSERT(r != NULL);
		r->srv = s;
		r->mc = mc;
		pthread_mutex_init(&r->mu, NULL);
		atomic_init(&r->refs, 1);
		r->start_ns = clock_mono_ns(clock_system());
		*con_cls = r;
		atomic_fetch_add(&s->requests, 1);
		/* The body's room at once (a 100 KB batch grew through a dozen reallocs and copies). */
		const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL) {
			unsigned long long n = strtoull(cl, NULL, 10);
			if (n > 0 && n <= s->opts.max_body_bytes)
				buf_reserve(&r->body, (size_t)n);
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (r->body.len + *upload_data_size > s->opts.max_body_bytes)
			r->too_large = true;
		else
			buf_append(&r->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!r->routed) {
		r->routed = true;
		route(r, url, method);
	}
	pthread_mutex_lock(&r->mu);
	if (r->remaining > 0) {
		/* Suspend under the lock: the completion that resumes cannot come first. */
		pthread_mutex_lock(&s->mu);
		if (s->stopping) {
			pthread_mutex_unlock(&s->mu);
			pthread_mutex_unlock(&r->mu);
			reply_error(r, 503, "shutting_down", "the server is stopping");
			return queue(r);
		}
		r->susp_prev = NULL;
		r->susp_next = s->suspended;
		if (s->suspended != NULL)
			s->suspended->susp_prev = r;
		s->suspended = r;
		r->susp_linked = true;
		pthread_mutex_unlock(&s->mu);
		r->suspended = true;
		MHD_suspend_connection(mc);
		pthread_mutex_unlock(&r->mu);
		return MHD_YES;
	}
	pthread_mutex_unlock(&r->mu);
	if (r->finish) {
		r->finish(r);
		r->finish = NULL;
	}
	return queue(r);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)mc;
	(void)toe;
	hreq_t *r = *con_cls;
	if (r != NULL && r->stop_answered)
		atomic_fetch_sub(&r->srv->draining, 1);
	if (r != NULL)
		hreq_unref(r);
	*con_cls = NULL;
}

static void start_keepalive(loop_task_t *t)
{
	http_server_t *s = t->data;
	loop_timer_start(s->timers, &s->keepalive, SSE_KEEPALIVE_MS / 2);
}

static void *timer_main(void *arg_)
{
	fl_thread_name("fl-http-timers");
	loop_run(arg_);
	return NULL;
}

void http_opts_default(http_opts_t *o)
{
	memset(o, 0, sizeof *o);
	o->listen_host = "127.0.0.1";
	o->listen_port = 8080;
	o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (o->threads < 1)
		o->threads = 1;
	o->max_body_bytes = 8 << 20;
	o->dedup_window_ms = 600000;
	o->dedup_max = 1000000;
	o->wait_max_ms = 300000;
}

err_t http_server_start(storage_t *st, const http_opts_t *o, http_server_t **out)
{
	http_server_t *s = calloc(1, sizeof *s);
	ASSERT(s != NULL);
	s->st = st;
	s->opts = *o;
	pthread_mutex_init(&s->mu, NULL);
	if (o->dedup_max > 0 && o->dedup_window_ms > 0) {
		s->nbuckets = 16; /* a power of two, at least twice the entries: a mask, not a division */
		while (s->nbuckets < (size_t)o->dedup_max * 2)
			s->nbuckets <<= 1;
		s->buckets = malloc(s->nbuckets * sizeof *s->buckets);
		ASSERT(s->buckets != NULL);
		memset(s->buckets, 0xff, s->nbuckets * sizeof *s->buckets); /* all -1 */
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->listen_port) };
	if (inet_pton(AF_INET, o->listen_host, &a.sin_addr) != 1) {
		log_error("http: --http-listen host '%s' is not an IPv4 address", o->listen_host);
		free(s);
		return ERR_INVALID;
	}
	err_t rc = loop_new(&s->timers);
	if (rc == OK)
		rc = -pthread_create(&s->timer_thread, NULL, timer_main, s->timers);
	if (rc != OK) {
		loop_free(s->timers);
		free(s);
		return rc;
	}
	s->d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL,
				NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)10000,
				MHD_OPTION_END);
	if (s->d == NULL) {
		log_error("http: cannot listen on %s:%d", o->listen_host, o->listen_port);
		loop_stop(s->timers);
		pthread_join(s->timer_thread, NULL);
		loop_free(s->timers);
		free(s);
		return ERR_SYS(EADDRINUSE);
	}
	s->keepalive.cb = on_keepalive;
	s->keepalive.data = s;
	s->task_keepalive.cb = start_keepalive;
	s->task_keepalive.data = s;
	loop_post(s->timers, &s->task_keepalive);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info ? info->port : o->listen_port;
	log_info("http: listening on %s:%d (%d threads)", o->listen_host, s->port, o->threads);
	*out = s;
	return OK;
}

int http_server_port(const http_server_t *s)
{
	return s->port;
}

void http_server_stop(http_server_t *s)
{
	if (s == NULL)
		return;
	/* Resume whatever waits (MHD must not stop with suspended connections); they answer 503 or finish. */
	pthread_mutex_lock(&s->mu);
	s->stopping = true; /* from here on nothing suspends */
	pthread_mutex_unlock(&s->mu);
	for (;;) {
		/* One at a time, taken under the lock with a reference: a completion racing us either unlinked
		 * it first (and resumes it itself) or finds it gone from the list. */
		pthread_mutex_lock(&s->mu);
		hreq_t *r = s->suspended;
		if (r != NULL) {
			susp_unlink(s, r);
			atomic_fetch_add(&r->refs, 1);
		}
		pthread_mutex_unlock(&s->mu);
		if (r == NULL)
			break;
		pthread_mutex_lock(&r->mu);
		if (r->suspended) {
			r->suspended = false;
			r->remaining = 0;
			r->finish = NULL;
			reply_error(r, 503, "shutting_down", "the server is stopping");
			r->stop_answered = true;
			atomic_fetch_add(&s->draining, 1);
			MHD_resume_connection(r->mc);
		}
		pthread_mutex_unlock(&r->mu);
		hreq_unref(r);
	}
	/* Bounded: let the resumed requests send their 503 before MHD closes every connection. */
	for (int i = 0; i < 200 && atomic_load(&s->draining) > 0; i++)
		usleep(10000);
	sse_wake_all(s); /* live tails see `stopping` and end their streams */
	for (int i = 0; i < 200; i++) { /* bounded: give them a moment to write their end */
		pthread_mutex_lock(&s->mu);
		bool any = s->streams != NULL;
		pthread_mutex_unlock(&s->mu);
		if (!any)
			break;
		sse_wake_all(s);
		usleep(10000);
	}
	MHD_stop_daemon(s->d);
	loop_stop(s->timers);
	pthread_join(s->timer_thread, NULL);
	/* Waits whose timers never fired: withdraw them from the storage and drop the timers' references. */
	while (s->wait_timers != NULL) {
		hreq_t *r = s->wait_timers;
		wait_timer_unlink(r);
		storage_cancel_commit_wait(s->st, &r->cw);
		hreq_unref(r);
	}
	loop_free(s->timers);
	for (size_t i = 0; i < s->ndedup; i++)
		free(s->dedup[i].key);
	free(s->dedup);
	free(s->buckets);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
