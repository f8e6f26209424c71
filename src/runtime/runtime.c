/*
 * runtime.c -- the functions runtime's lifecycle: start, deploy, stop; the shared producer (emits and dead
 * letters); function logs; introspection. See runtime.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/thread.h"
#include "core/log.h"
#include "event/cloudevents.h"
#include "runtime/rt_int.h"

#define LOG_ROTATE_BYTES (16 << 20)

int64_t rt_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rt_now_ms(void)
{
	return rt_now_ns() / 1000000;
}

int64_t rt_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rt_ev_json(const char *topic, const rt_ev_t *ev, buf_t *b)
{
	ce_kv_t hdrs[64];
	int n = 0;
	const char *name;
	const void *val;
	size_t size;
	const rd_kafka_message_t *m = ev->msg;
	/* Detached, and destroyed below by this thread: the parse allocates, and freeing in the thread that
	 * allocated keeps glibc's per-thread cache warm (freed with the message, by the consumer thread, every
	 * allocation missed it: a tenth of the worker's time). The record's raw headers stay, so a later reader
	 * parses them again. */
	rd_kafka_headers_t *h = NULL;
	if (rd_kafka_message_detach_headers(ev->msg, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
		h = NULL;
	while (h != NULL && n < 64 &&
	       rd_kafka_header_get_all(h, (size_t)n, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		hdrs[n].key = slice_cstr(name);
		hdrs[n].value = slice_make(val, size);
		hdrs[n].value_null = val == NULL;
		n++;
	}
	ce_kafka_record_t r = { .topic = topic, .partition = ev->partition, .offset = ev->offset,
				.timestamp = ev->ts_ms, .key = slice_make(m->key, m->key_len),
				.value = slice_make(m->payload, m->len), .key_null = m->key == NULL,
				.value_null = m->payload == NULL, .headers = hdrs, .nheaders = n };
	ce_record_to_text(&r, true, b); /* with topic: which trigger's stream it came from */
	if (h != NULL)
		rd_kafka_headers_destroy(h);
}

json_t *rt_ev_ce(const char *topic, const rt_ev_t *ev)
{
	buf_t b = { 0 };
	rt_ev_json(topic, ev, &b);
	json_t *o = ce_text_parse((const char *)b.data, b.len);
	buf_free(&b);
	return o;
}

void runtime_opts_default(runtime_opts_t *o)
{
	memset(o, 0, sizeof *o);
	o->bootstrap = "127.0.0.1:9092";
	o->create_streams = true;
	o->stop_timeout_ms = 10000;
	o->log_dir = ".";
}

/* ---- logs -------------------------------------------------------------------------------------------- */

/* Copies the log to NAME.log.1 and truncates it in place: workers hold O_APPEND descriptors of this file,
 * so a rename would leave them writing to the old one. */
static void log_rotate(int fd, const char *path)
{
	char old[4200];
	snprintf(old, sizeof old, "%s.1", path);
	int out = open(old, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return;
	char buf[65536];
	ssize_t n;
	off_t pos = 0;
	while ((n = pread(fd, buf, sizeof buf, pos)) > 0) {
		if (write(out, buf, (size_t)n) != n)
			break;
		pos += n;
	}
	close(out);
	if (ftruncate(fd, 0) != 0)
		log_warn("cannot truncate %s: %s", path, strerror(errno));
}

void rt_fn_log(rt_fn_t *fn, const char *fmt, ...)
{
	char line[1024];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ [factlog] ", &tm);
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n += k < 0 ? 0 : k >= (int)sizeof line - n - 1 ? (int)sizeof line - n - 2 : k;
	line[n++] = '\n';
	int fd = open(fn->log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) == 0 && st.st_size > LOG_ROTATE_BYTES)
			log_rotate(fd, fn->log_path);
		ssize_t w = write(fd, line, (size_t)n);
		(void)w;
		close(fd);
	}
	log_debug("function %s: %.*s", fn->def->name, n - 1, line);
}

char *runtime_logs(runtime_t *rt, const char *name, int lines)
{
	char path[4200];
	bool found = false;
	pthread_mutex_lock(&rt->mu);
	for (int i = 0; i < rt->nfns && !found; i++)
		if (strcmp(rt->fns[i]->def->name, name) == 0) {
			snprintf(path, sizeof path, "%s", rt->fns[i]->log_path);
			found = true;
		}
	pthread_mutex_unlock(&rt->mu);
	if (!found)
		return NULL;
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return strdup("");
	/* read the tail: at most 1 MiB, then keep the last `lines` lines */
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long from = size > (1 << 20) ? size - (1 << 20) : 0;
	fseek(f, from, SEEK_SET);
	char *b = malloc((size_t)(size - from) + 1);
	size_t got = fread(b, 1, (size_t)(size - from), f);
	fclose(f);
	b[got] = 0;
	int seen = 0;
	size_t start = 0;
	for (size_t i = got; i > 0; i--)
		if (b[i - 1] == '\n' && i != got && ++seen == lines) {
			start = i;
			break;
		}
	memmove(b, b + start, got - start + 1);
	return b;
}

/* ---- the producer ------------------------------------------------------------------------------------ */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	rt_dr_t *dr = m->_private;
	if (dr == NULL)
		return;
	if (dr->kind == JOB_DEAD_LETTER) {
		rt_job_t *job = (rt_job_t *)dr;
		if (m->err) {
			job->status = 1;
			job->error = strdup(rd_kafka_err2str(m->err));
		}
		rt_trigger_post(job);
		return;
	}
	rt_emit_wait_t *w = (rt_emit_wait_t *)dr;
	pthread_mutex_lock(&w->mu);
	if (m->err && w->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		w->err = m->err;
	if (--w->pending == 0)
		pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

/* How long a stopping runtime lets emits and dead letters be delivered before it gives up on them. An
 * emit to a topic that does not exist would otherwise hold its invocation, and so the stop, for the whole
 * message.timeout.ms (30 s). A purged message fails its invocation: the event is not done, not committed,
 * and is processed again after the restart (at least once). */
#define STOP_DELIVERY_GRACE_MS 5000

static void *producer_main(void *arg)
{
	runtime_t *rt = arg;
	fl_thread_name("fl-fn-producer");
	int64_t purged_ms = 0;
	while (!atomic_load(&rt->stopping)) {
		rd_kafka_poll(rt->producer, 100);
		int64_t since = atomic_load(&rt->draining_since_ms), now = rt_now_ms();
		if (since > 0 && now - since >= STOP_DELIVERY_GRACE_MS && now - purged_ms >= 1000 &&
		    rd_kafka_outq_len(rt->producer) > 0) {
			/* again each second: an invocation still running may produce after the first purge */
			if (purged_ms == 0)
				log_warn("functions: undelivered emits or dead letters %d s into the stop: failing them "
					 "(their events are processed again after the restart)",
					 STOP_DELIVERY_GRACE_MS / 1000);
			rd_kafka_purge(rt->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
			purged_ms = now;
		}
	}
	rd_kafka_flush(rt->producer, 10000);
	return NULL;
}

static void random_hex(char *out, int nbytes)
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < nbytes; i++) {
		unsigned v = (unsigned)random() & 0xff;
		out[2 * i] = hex[v >> 4];
		out[2 * i + 1] = hex[v & 15];
	}
	out[2 * nbytes] = 0;
}

/* W3C trace context: the child of the cause's traceparent (same trace, new span), or a new trace. */
static void child_traceparent(const char *parent, char out[56])
{
	char trace[33], span[17];
	random_hex(span, 8);
	if (parent != NULL && strlen(parent) == 55 && parent[2] == '-' && parent[35] == '-' && parent[52] == '-') {
		snprintf(out, 56, "00-%.32s-%s-%.2s", parent + 3, span, parent + 53);
		return;
	}
	random_hex(trace, 16);
	snprintf(out, 56, "00-%s-%s-01", trace, span);
}

/* Produces one message (rd_kafka_produceva: the RD_KAFKA_V_ macros need GNU extensions). On success the
 * headers belong to librdkafka; on failure they are still the caller's. */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *p, const char *topic, const void *key, size_t klen,
				       const void *value, size_t vlen, int64_t ts, rd_kafka_headers_t *h, void *opaque)
{
	rd_kafka_vu_t vu[8];
	size_t n = 0;
	vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
	vu[n++].u.cstr = topic;
	vu[n].vtype = RD_KAFKA_VTYPE_KEY;
	vu[n].u.mem.ptr = (void *)(uintptr_t)key;
	vu[n++].u.mem.size = klen;
	vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
	vu[n].u.mem.ptr = (void *)(uintptr_t)value;
	vu[n++].u.mem.size = vlen;
	vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
	vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
	if (ts > 0) {
		vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
		vu[n++].u.i64 = ts;
	}
	vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
	vu[n++].u.headers = h;
	vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
	vu[n++].u.ptr = opaque;
	rd_kafka_error_t *e = rd_kafka_produceva(p, vu, n);
	if (e == NULL)
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_resp_err_t code = rd_kafka_error_code(e);
	rd_kafka_error_destroy(e);
	return code;
}

static const char *produce_event(rd_kafka_t *p, const char *topic, const ce_event_t *ev, void *opaque)
{
	slice_t key, value;
	ce_kv_t hdrs[CE_ATTRS_MAX];
	char names[CE_ATTRS_MAX][32];
	int nh = ce_to_record(ev, &key, &value, hdrs, names, CE_ATTRS_MAX);
	rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)nh);
	for (int i = 0; i < nh; i++)
		rd_kafka_header_add(h, (const char *)hdrs[i].key.ptr, (ssize_t)hdrs[i].key.len, hdrs[i].value.ptr,
				    (ssize_t)hdrs[i].value.len);
	rd_kafka_resp_err_t e = produce_one(p, topic, key.ptr, key.len, value.ptr, value.len, 0, h, opaque);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(h);
		return rd_kafka_err2str(e);
	}
	return NULL;
}

const char *rt_produce_emit(rt_fn_t *fn, json_t *emit, json_t *cause, rt_emit_wait_t *w)
{
	if (!json_is_object(emit))
		return "not an object";
	const char *topic = json_string_value(json_object_get(emit, "topic"));
	if (topic == NULL || topic[0] == 0)
		return "missing \"topic\"";
	if (strlen(topic) > 249 || strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
					   strlen(topic))
		return "\"topic\" is not a valid topic name (1 to 249 of [A-Za-z0-9._-])";
	json_t *e = json_deep_copy(emit);
	json_object_del(e, "topic");
	json_object_del(e, "cause");
	char buf[300];
	if (json_object_get(e, "specversion") == NULL)
		json_object_set_new(e, "specversion", json_string("1.0"));
	if (json_object_get(e, "id") == NULL) {
		random_hex(buf, 16);
		json_object_set_new(e, "id", json_string(buf));
	}
	if (json_object_get(e, "source") == NULL) {
		snprintf(buf, sizeof buf, "/factlog/functions/%s", fn->def->name);
		json_object_set_new(e, "source", json_string(buf));
	}
	if (json_object_get(e, "type") == NULL)
		json_object_set_new(e, "type", json_string("factlog.emitted"));
	/* provenance: what caused it, the conversation it belongs to, the trace it continues */
	json_object_set_new(e, "causationtopic", json_copy(json_object_get(cause, "topic")));
	/* numbers as integers even when the cause was read with reals (see ce_text_parse) */
	json_object_set_new(e, "causationpartition",
			    json_integer((json_int_t)json_number_value(json_object_get(cause, "partition"))));
	json_object_set_new(e, "causationoffset",
			    json_integer((json_int_t)json_number_value(json_object_get(cause, "offset"))));
	json_object_set_new(e, "causationid", json_copy(json_object_get(cause, "id")));
	/* a handler may start its own conversation or trace; otherwise both continue from the cause */
	if (json_object_get(e, "correlationid") == NULL) {
		json_t *corr = json_object_get(cause, "correlationid");
		json_object_set_new(e, "correlationid", json_copy(corr != NULL ? corr : json_object_get(cause, "id")));
	}
	if (json_object_get(e, "traceparent") == NULL) {
		char tp[56];
		child_traceparent(json_string_value(json_object_get(cause, "traceparent")), tp);
		json_object_set_new(e, "traceparent", json_string(tp));
	}
	ce_event_t ev;
	memset(&ev, 0, sizeof ev);
	const char *bad = ce_from_json(e, &ev);
	if (bad == NULL)
		bad = ce_validate(&ev);
	if (bad == NULL) {
		pthread_mutex_lock(&w->mu);
		w->pending++;
		pthread_mutex_unlock(&w->mu);
		bad = produce_event(fn->rt->producer, topic, &ev, w);
		if (bad != NULL) {
			pthread_mutex_lock(&w->mu);
			w->pending--;
			pthread_mutex_unlock(&w->mu);
		}
	}
	ce_event_free(&ev);
	json_decref(e);
	return bad;
}

err_t rt_produce_dead_letter(rt_job_t *job, const char *topic)
{
	rt_ev_t *ev = job->evs[0];
	rt_trigger_t *tr = job->tr;
	const rd_kafka_message_t *m = ev->msg;
	rd_kafka_headers_t *h = NULL;
	h = rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_headers_copy(h)
									   : rd_kafka_headers_new(8);
	char num[32];
	const char *err = ev->error ? ev->error : "failed";
	rd_kafka_header_add(h, "factlog-error", -1, err, -1);
	snprintf(num, sizeof num, "%d", ev->attempts);
	rd_kafka_header_add(h, "factlog-attempts", -1, num, -1);
	rd_kafka_header_add(h, "factlog-topic", -1, tr->def->stream, -1);
	snprintf(num, sizeof num, "%" PRId32, ev->partition);
	rd_kafka_header_add(h, "factlog-partition", -1, num, -1);
	snprintf(num, sizeof num, "%" PRId64, ev->offset);
	rd_kafka_header_add(h, "factlog-offset", -1, num, -1);
	rd_kafka_header_add(h, "factlog-function", -1, tr->fn->def->name, -1);
	rd_kafka_resp_err_t e = produce_one(tr->fn->rt->producer, topic, m->key, m->key_len, m->payload, m->len,
					    ev->ts_ms, h, &job->dr);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(h);
		return ERR_INVALID;
	}
	return OK;
}

/* ---- functions --------------------------------------------------------------------------------------- */

static void app_unref(rt_app_t *a)
{
	if (a != NULL && atomic_fetch_sub(&a->refs, 1) == 1) {
		app_free(a->app);
		free(a);
	}
}

static rt_fn_t *fn_start(runtime_t *rt, rt_app_t *app, const fn_def_t *def, char *err, size_t errcap)
{
	rt_fn_t *fn = calloc(1, sizeof *fn);
	fn->rt = rt;
	fn->app = app;
	atomic_fetch_add(&app->refs, 1);
	fn->def = def;
	size_t pl = strlen(rt->log_dir) + strlen(def->name) + 8;
	fn->log_path = malloc(pl);
	snprintf(fn->log_path, pl, "%s/%s.log", rt->log_dir, def->name);
	size_t sl = strlen(rt->log_dir) + strlen(def->name) + 24;
	fn->state_var = malloc(sl);
	snprintf(fn->state_var, sl, "FACTLOG_STATE_DIR=%s/%s", rt->log_dir, def->name);
	pthread_mutex_init(&fn->mu, NULL);
	pthread_cond_init(&fn->cond, NULL);
	pthread_cond_init(&fn->exited, NULL);
	pthread_mutex_init(&fn->rp_mu, NULL);
	if (mkdir(fn->state_var + 18, 0755) != 0 && errno != EEXIST)
		rt_fn_log(fn, "cannot create the state directory %s: %s", fn->state_var + 18, strerror(errno));
	fn->ntriggers = def->ntriggers;
	fn->triggers = calloc((size_t)def->ntriggers, sizeof *fn->triggers);
	/* A replay that had not ended when the function last stopped resumes; with `then live` its trigger
	 * stays stopped until the hand-over (the live group must not move before it). */
	for (int i = 0; i < def->ntriggers; i++) {
		fn->triggers[i].fn = fn;
		fn->triggers[i].def = &def->triggers[i];
		fn->triggers[i].index = i;
	}
	int held = -1;
	rt_replay_t *rp = rt_replay_recorded(fn, &held);
	rt_pool_start_min(fn);
	for (int i = 0; i < def->ntriggers; i++) {
		rt_trigger_t *tr = &fn->triggers[i];
		if (i == held) {
			rt_trigger_set_state(tr, RT_REPLAY_HELD);
			continue;
		}
		if (rt_trigger_start(tr, err, errcap) != OK) {
			fn->ntriggers = i + 1;
			break; /* the caller stops it (the replay keeps its record) */
		}
	}
	if (rp != NULL)
		rt_replay_resume(fn, rp);
	rt_fn_log(fn, "function %s started (%d trigger(s))", def->name, def->ntriggers);
	return fn;
}

/* Tells the function's triggers and replay to stop, without waiting: runtime_stop tells every function
 * before it waits for any, so that by the time it purges undelivered emits (producer_main) no trigger
 * still schedules work whose failure would count. Only atomics: a replay's controller may be stopping or
 * starting the live trigger meanwhile; with fn_stopping set it no longer starts it. */
static void fn_signal_stop(rt_fn_t *fn)
{
	pthread_mutex_lock(&fn->rp_mu);
	if (fn->replay != NULL) {
		atomic_store(&fn->replay->fn_stopping, true);
		atomic_store(&fn->replay->cancel, true);
	}
	pthread_mutex_unlock(&fn->rp_mu);
	for (int i = 0; i < fn->ntriggers; i++)
		atomic_store(&fn->triggers[i].stop, true); /* seen within the consumer loop's 100 ms poll */
}

static void fn_stop(rt_fn_t *fn)
{
	rt_replay_stop_fn(fn); /* first: it may hold a live trigger stopped, and uses the pool */
	for (int i = 0; i < fn->ntriggers; i++)
		rt_trigger_fini(&fn->triggers[i]);
	rt_pool_stop(fn);
	rt_fn_log(fn, "function %s stopped", fn->def->name);
	free(fn->triggers);
	pthread_mutex_destroy(&fn->mu);
	pthread_cond_destroy(&fn->cond);
	pthread_cond_destroy(&fn->exited);
	pthread_mutex_destroy(&fn->rp_mu);
	app_unref(fn->app);
	free(fn->log_path);
	free(fn->state_var);
	free(fn);
}

/* Creates the app's streams that do not exist yet (CreateTopics through librdkafka's admin API). */
static err_t create_streams(runtime_t *rt, const app_t *app, char *err, size_t errcap)
{
	if (app->nstreams == 0 || !rt->opts.create_streams)
		return OK;
	/* Only what is missing: a cluster that cannot create topics (librdkafka's mock) may have them already. */
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t me = rd_kafka_metadata(rt->producer, 1, NULL, &md, 15000);
	if (me != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errcap, "cannot read the topics of %s: %s", rt->bootstrap, rd_kafka_err2str(me));
		return ERR_CLOSED;
	}
	char es[512];
	rd_kafka_NewTopic_t **nt = calloc((size_t)app->nstreams, sizeof *nt);
	size_t nnew = 0;
	for (int i = 0; i < app->nstreams; i++) {
		const app_stream_t *s = &app->streams[i];
		bool exists = false;
		for (int k = 0; k < md->topic_cnt && !exists; k++)
			exists = strcmp(md->topics[k].topic, s->name) == 0 &&
				 md->topics[k].err == RD_KAFKA_RESP_ERR_NO_ERROR;
		if (exists)
			continue;
		rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(s->name, s->partitions, -1, es, sizeof es);
		char v[32];
		if (s->retention_ms >= 0) {
			snprintf(v, sizeof v, "%" PRId64, s->retention_ms);
			rd_kafka_NewTopic_set_config(t, "retention.ms", v);
		}
		if (s->retention_bytes >= 0) {
			snprintf(v, sizeof v, "%" PRId64, s->retention_bytes);
			rd_kafka_NewTopic_set_config(t, "retention.bytes", v);
		}
		nt[nnew++] = t;
	}
	rd_kafka_metadata_destroy(md);
	if (nnew == 0) {
		free(nt);
		return OK;
	}
	rd_kafka_queue_t *q = rd_kafka_queue_new(rt->producer);
	rd_kafka_CreateTopics(rt->producer, nt, nnew, NULL, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
	err_t rc = OK;
	if (ev == NULL) {
		snprintf(err, errcap, "creating streams: no answer from %s within 30 s", rt->bootstrap);
		rc = ERR_CLOSED;
	} else if (rd_kafka_event_error(ev)) {
		snprintf(err, errcap, "creating streams: %s", rd_kafka_event_error_string(ev));
		rc = ERR_INVALID;
	} else {
		size_t n;
		const rd_kafka_topic_result_t **res =
			rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
		for (size_t i = 0; i < n && rc == OK; i++) {
			rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
			if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
				const char *why = rd_kafka_topic_result_error_string(res[i]);
				snprintf(err, errcap, "creating stream %s: %s", rd_kafka_topic_result_name(res[i]),
					 why ? why : rd_kafka_err2str(e));
				rc = ERR_INVALID;
			}
		}
	}
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy_array(nt, nnew);
	free(nt);
	return rc;
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool json_eq(const json_t *a, const json_t *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && json_equal((json_t *)(uintptr_t)a,
										  (json_t *)(uintptr_t)b));
}

/* Whether a running function can be kept as it is across a deploy. */
static bool fn_same(const fn_def_t *a, const fn_def_t *b, const app_t *aa, const app_t *ba)
{
	if (!str_eq(a->run, b->run) || !str_eq(a->http, b->http) || a->nenv != b->nenv ||
	    a->timeout_ms != b->timeout_ms || a->min_workers != b->min_workers || a->max_workers != b->max_workers ||
	    a->idle_ms != b->idle_ms || a->ntriggers != b->ntriggers || !str_eq(aa->dir, ba->dir))
		return false;
	for (int i = 0; i < a->nenv; i++)
		if (strcmp(a->env[i], b->env[i]) != 0)
			return false;
	for (int i = 0; i < a->ntriggers; i++) {
		const fn_trigger_t *x = &a->triggers[i], *y = &b->triggers[i];
		if (!str_eq(x->stream, y->stream) || !str_eq(x->group, y->group) || x->batch_size != y->batch_size ||
		    x->batch_window_ms != y->batch_window_ms || x->start != y->start ||
		    x->start_time_ms != y->start_time_ms || x->ordering != y->ordering ||
		    x->concurrency != y->concurrency || !json_eq(x->filter_json, y->filter_json) ||
		    x->retry_attempts != y->retry_attempts || x->retry_base_ms != y->retry_base_ms ||
		    x->retry_max_ms != y->retry_max_ms || x->max_age_ms != y->max_age_ms ||
		    !str_eq(x->on_failure, y->on_failure))
			return false;
	}
	return true;
}

err_t runtime_deploy(runtime_t *rt, app_t *app, char *err, size_t errcap)
{
	err_t rc = create_streams(rt, app, err, errcap);
	if (rc != OK) {
		app_free(app);
		return rc;
	}
	rt_app_t *na = calloc(1, sizeof *na);
	na->app = app;
	na->refs = 1;
	pthread_mutex_lock(&rt->mu);
	rt_fn_t **old = rt->fns;
	int nold = rt->nfns;
	rt_fn_t **fns = calloc((size_t)app->nfunctions + 1, sizeof *fns);
	int nfns = 0;
	bool failed = false;
	/* stop what changed or went away; keep what is the same */
	for (int i = 0; i < nold; i++) {
		const fn_def_t *nd = app_function(app, old[i]->def->name);
		if (nd != NULL && fn_same(old[i]->def, nd, old[i]->app->app, app)) {
			fns[nfns++] = old[i];
			old[i] = NULL;
		} else {
			char *gone = nd == NULL ? strdup(old[i]->def->name) : NULL; /* fn_stop frees the definition */
			fn_stop(old[i]);
			old[i] = NULL;
			if (gone != NULL)
				rt_replay_forget(rt, gone); /* it left the app: nothing to resume */
			free(gone);
		}
	}
	for (int i = 0; i < app->nfunctions; i++) {
		bool kept = false;
		for (int k = 0; k < nfns && !kept; k++)
			kept = strcmp(fns[k]->def->name, app->functions[i].name) == 0;
		if (kept)
			continue;
		char ferr[512] = "";
		rt_fn_t *fn = fn_start(rt, na, &app->functions[i], ferr, sizeof ferr);
		fns[nfns++] = fn;
		if (ferr[0] != 0) { /* it stays listed (and stoppable); the deploy reports the problem */
			snprintf(err, errcap, "function %s: %s", app->functions[i].name, ferr);
			failed = true;
		}
	}
	free(old);
	rt->fns = fns;
	rt->nfns = nfns;
	rt_app_t *prev = rt->app;
	rt->app = na;
	pthread_mutex_unlock(&rt->mu);
	app_unref(prev);
	return failed ? ERR_INVALID : OK;
}

err_t runtime_start(const runtime_opts_t *o, app_t *app, runtime_t **out, char *err, size_t errcap)
{
	signal(SIGPIPE, SIG_IGN); /* a worker that died must not take the server with it */
	runtime_t *rt = calloc(1, sizeof *rt);
	rt->opts = *o;
	rt->bootstrap = strdup(o->bootstrap);
	rt->log_dir = strdup(o->log_dir ? o->log_dir : ".");
	pthread_mutex_init(&rt->mu, NULL);
	if (mkdir(rt->log_dir, 0755) != 0 && errno != EEXIST) {
		snprintf(err, errcap, "cannot create the log directory %s: %s", rt->log_dir, strerror(errno));
		goto fail;
	}
	char *abs = realpath(rt->log_dir, NULL); /* workers run in their app's directory */
	if (abs != NULL) {
		free(rt->log_dir);
		rt->log_dir = abs;
	}
	char es[512];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	const char *kv[][2] = {
		{ "bootstrap.servers", rt->bootstrap },
		{ "client.id", "factlog-runtime" },
		{ "acks", "all" },
		{ "enable.idempotence", "true" },
		{ "linger.ms", "1" },
		{ "message.timeout.ms", "30000" }, /* bounds how long a stop waits for an emit or dead letter */
		{ "partitioner", "murmur2_random" }, /* the Java client's and the HTTP gateway's choice */
		{ "log_level", "3" },
	};
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], es, sizeof es) != RD_KAFKA_CONF_OK) {
			snprintf(err, errcap, "%s: %s", kv[i][0], es);
			rd_kafka_conf_destroy(c);
			goto fail;
		}
	rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
	rt->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, es, sizeof es);
	if (rt->producer == NULL) {
		snprintf(err, errcap, "producer: %s", es);
		goto fail;
	}
	pthread_create(&rt->producer_thread, NULL, producer_main, rt);
	err_t rc = runtime_deploy(rt, app, err, errcap);
	app = NULL;
	if (rc != OK) {
		runtime_stop(rt);
		return rc;
	}
	rt_replay_sweep(rt);
	*out = rt;
	return OK;
fail:
	app_free(app);
	free(rt->bootstrap);
	free(rt->log_dir);
	free(rt);
	return ERR_INVALID;
}

void runtime_stop(runtime_t *rt)
{
	pthread_mutex_lock(&rt->mu);
	for (int i = 0; i < rt->nfns; i++)
		fn_signal_stop(rt->fns[i]);
	atomic_store(&rt->draining_since_ms, rt_now_ms());
	for (int i = 0; i < rt->nfns; i++)
		fn_stop(rt->fns[i]);
	free(rt->fns);
	rt->fns = NULL;
	rt->nfns = 0;
	pthread_mutex_unlock(&rt->mu);
	atomic_store(&rt->stopping, true);
	pthread_join(rt->producer_thread, NULL);
	rd_kafka_destroy(rt->producer);
	app_unref(rt->app);
	pthread_mutex_destroy(&rt->mu);
	free(rt->bootstrap);
	free(rt->log_dir);
	free(rt);
}

/* ---- introspection ----------------------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static json_t *fn_json(rt_fn_t *fn, bool detail)
{
	const fn_def_t *d = fn->def;
	rt_stats_t *s = &fn->stats;
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(d->name));
	json_object_set_new(o, d->run ? "run" : "http", json_string(d->run ? d->run : d->http));
	int64_t lag = 0;
	json_t *trs = json_array();
	const char *state = "running";
	for (int i = 0; i < fn->ntriggers; i++) {
		json_t *t = rt_trigger_json(&fn->triggers[i]);
		lag += json_integer_value(json_object_get(t, "lag"));
		const char *ts = json_string_value(json_object_get(t, "state"));
		if (ts != NULL && strcmp(ts, RT_REPLAY_HELD) == 0 && strcmp(state, "running") == 0)
			state = "replaying";
		else if (ts != NULL && strcmp(ts, "running") != 0 && strcmp(ts, RT_REPLAY_HELD) != 0)
			state = "degraded";
		json_array_append_new(trs, t);
	}
	json_object_set_new(o, "state", json_string(state));
	pthread_mutex_lock(&fn->mu);
	json_object_set_new(o, "workers", json_integer(fn->nworkers));
	json_object_set_new(o, "busy", json_integer(fn->nbusy));
	json_object_set_new(o, "queued_batches", json_integer(fn->queued));
	int nl = fn->nlat < 256 ? (int)fn->nlat : 256;
	int64_t lat[256];
	memcpy(lat, fn->lat_ms, (size_t)nl * sizeof lat[0]);
	pthread_mutex_unlock(&fn->mu);
	json_object_set_new(o, "lag", json_integer(lag));
	json_object_set_new(o, "invocations", json_integer(atomic_load(&s->invocations)));
	json_object_set_new(o, "errors", json_integer(atomic_load(&s->errors)));
	if (!detail) {
		json_decref(trs);
		return o;
	}
	json_object_set_new(o, "min_workers", json_integer(d->min_workers));
	json_object_set_new(o, "max_workers", json_integer(d->max_workers));
	json_object_set_new(o, "timeout_ms", json_integer(d->timeout_ms));
	json_t *st = json_object();
	json_object_set_new(st, "events_in", json_integer(atomic_load(&s->events_in)));
	json_object_set_new(st, "events_ok", json_integer(atomic_load(&s->events_ok)));
	json_object_set_new(st, "filtered", json_integer(atomic_load(&s->filtered)));
	json_object_set_new(st, "retries", json_integer(atomic_load(&s->retries)));
	json_object_set_new(st, "bisections", json_integer(atomic_load(&s->bisections)));
	json_object_set_new(st, "dead_lettered", json_integer(atomic_load(&s->dead_lettered)));
	json_object_set_new(st, "discarded", json_integer(atomic_load(&s->discarded)));
	json_object_set_new(st, "emitted", json_integer(atomic_load(&s->emitted)));
	json_object_set_new(st, "timeouts", json_integer(atomic_load(&s->timeouts)));
	json_object_set_new(st, "crashes", json_integer(atomic_load(&s->crashes)));
	json_object_set_new(st, "cold_starts", json_integer(atomic_load(&s->cold_starts)));
	json_object_set_new(st, "last_cold_start_ms", json_integer(atomic_load(&s->last_cold_start_ms)));
	if (nl > 0) {
		qsort(lat, (size_t)nl, sizeof lat[0], cmp_i64);
		json_object_set_new(st, "invocation_ms_p50", json_integer(lat[nl / 2]));
		json_object_set_new(st, "invocation_ms_p99", json_integer(lat[(nl * 99) / 100]));
	}
	json_object_set_new(o, "stats", st);
	json_object_set_new(o, "triggers", trs);
	json_t *rp = rt_replay_json_fn(fn);
	if (rp != NULL)
		json_object_set_new(o, "replay", rp);
	return o;
}

json_t *runtime_list_json(runtime_t *rt)
{
	json_t *arr = json_array();
	pthread_mutex_lock(&rt->mu);
	for (int i = 0; i < rt->nfns; i++)
		json_array_append_new(arr, fn_json(rt->fns[i], false));
	pthread_mutex_unlock(&rt->mu);
	json_t *o = json_object();
	json_object_set_new(o, "functions", arr);
	return o;
}

json_t *runtime_describe_json(runtime_t *rt, const char *name)
{
	json_t *o = NULL;
	pthread_mutex_lock(&rt->mu);
	for (int i = 0; i < rt->nfns && o == NULL; i++)
		if (strcmp(rt->fns[i]->def->name, name) == 0)
			o = fn_json(rt->fns[i], true);
	pthread_mutex_unlock(&rt->mu);
	return o;
}
