/*
 * trigger.c -- one trigger of a function: a Kafka consumer group member and the scheduler of its events.
 *
 * The consumer thread owns all partition state (rt_part_t and its events, see rt_int.h). Its loop:
 *   1. take back finished jobs (workers post them under tr->mu and yield the consumer queue to wake it);
 *   2. dispatch batches while the ordering mode allows (scan the partition's queue in offset order, skipping
 *      keys in flight or blocked behind an earlier undone event of the same key);
 *   3. commit, per partition, the first offset not yet done (one asynchronous commit in flight at a time,
 *      at most one started per COMMIT_MIN_NS);
 *   4. poll the consumer for new records, no longer than the next timer (a retry, a batching window);
 *   5. when librdkafka's prefetch ran low, have its helper thread wake the fetcher (fetch_nudge).
 * Rebalances (eager) are served inside the poll: a revoked partition stops dispatching, waits for its jobs
 * in flight, commits where it got to, and is dropped.
 *
 * A replay's bounded trigger (tr->rp, see replay.c) runs the same loop without a group membership: it assigns
 * each partition's range start, drops what it polls at or past the range's end (and pauses the partition
 * there), and leaves the loop once every partition reached its end with nothing undone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/thread.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "runtime/rt_int.h"

/* ---- the event queue of a partition ------------------------------------------------------------------ */

static void evq_push(rt_evq_t *q, rt_ev_t *ev)
{
	if (q->n == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 256;
		rt_ev_t **v = malloc(ncap * sizeof *v);
		for (size_t i = 0; i < q->n; i++)
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = ncap;
		q->head = 0;
	}
	q->v[(q->head + q->n) % q->cap] = ev;
	q->n++;
}

static inline rt_ev_t *evq_at(const rt_evq_t *q, size_t i)
{
	return q->v[(q->head + i) % q->cap];
}

static void evq_pop(rt_evq_t *q)
{
	q->head = (q->head + 1) % q->cap;
	q->n--;
}

/* Events are recycled through a small per-trigger cache: calloc and free per event were a sixth of the
 * consumer thread's time (perf), contending for malloc's arena locks with librdkafka's threads. */
#define EV_CACHE 4096
static rt_ev_t *ev_new(rt_trigger_t *tr)
{
	if (tr->ev_cached == 0)
		return calloc(1, sizeof(rt_ev_t));
	rt_ev_t *ev = tr->ev_cache[--tr->ev_cached];
	memset(ev, 0, sizeof *ev);
	return ev;
}

static void ev_free(rt_trigger_t *tr, rt_ev_t *ev)
{
	if (ev->msg != NULL) /* NULL: its worker destroyed it (worker.c release_records) */
		rd_kafka_message_destroy(ev->msg);
	free(ev->error);
	if (tr->ev_cache == NULL)
		tr->ev_cache = malloc(EV_CACHE * sizeof *tr->ev_cache);
	if (tr->ev_cache != NULL && tr->ev_cached < EV_CACHE)
		tr->ev_cache[tr->ev_cached++] = ev;
	else
		free(ev);
}

/* ---- key sets ---------------------------------------------------------------------------------------- */

static uint64_t key_hash(const void *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a finalizer so the low bits mix */
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h ? h : 1;
}

static size_t ks_slot(const rt_keyset_t *s, uint64_t k)
{
	size_t i = (size_t)k & (s->cap - 1);
	while (s->keys[i] != 0 && s->keys[i] != k)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static void ks_add(rt_keyset_t *s, uint64_t k)
{
	if ((s->n + 1) * 2 > s->cap) {
		rt_keyset_t o = *s;
		s->cap = o.cap ? o.cap * 2 : 64;
		s->keys = calloc(s->cap, sizeof *s->keys);
		s->counts = calloc(s->cap, sizeof *s->counts);
		s->n = 0;
		for (size_t i = 0; i < o.cap; i++)
			if (o.keys[i] != 0) {
				size_t j = ks_slot(s, o.keys[i]);
				s->keys[j] = o.keys[i];
				s->counts[j] = o.counts[i];
				s->n++;
			}
		free(o.keys);
		free(o.counts);
	}
	size_t i = ks_slot(s, k);
	if (s->keys[i] == 0) {
		s->keys[i] = k;
		s->n++;
	}
	s->counts[i]++;
}

static bool ks_has(const rt_keyset_t *s, uint64_t k)
{
	return s->cap > 0 && s->keys[ks_slot(s, k)] == k;
}

static void ks_del(rt_keyset_t *s, uint64_t k)
{
	size_t i = ks_slot(s, k);
	if (s->keys[i] != k || --s->counts[i] > 0)
		return;
	/* backward-shift deletion keeps every probe chain unbroken */
	size_t j = i;
	for (;;) {
		s->keys[i] = 0;
		s->counts[i] = 0;
		for (;;) {
			j = (j + 1) & (s->cap - 1);
			if (s->keys[j] == 0) {
				s->n--;
				return;
			}
			size_t home = (size_t)s->keys[j] & (s->cap - 1);
			if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j))
				break;
		}
		s->keys[i] = s->keys[j];
		s->counts[i] = s->counts[j];
		i = j;
	}
}

static void gs_reset(rt_genset_t *s, size_t want)
{
	if (want * 2 > s->cap) {
		free(s->keys);
		free(s->gens);
		s->cap = 64;
		while (s->cap < want * 2)
			s->cap *= 2;
		s->keys = calloc(s->cap, sizeof *s->keys);
		s->gens = calloc(s->cap, sizeof *s->gens);
		s->gen = 0;
	}
	if (++s->gen == 0) { /* wrapped: every slot would look current */
		memset(s->gens, 0, s->cap * sizeof *s->gens);
		s->gen = 1;
	}
	s->n = 0;
}

static size_t gs_slot(const rt_genset_t *s, uint64_t k)
{
	size_t i = (size_t)k & (s->cap - 1);
	while (s->gens[i] == s->gen && s->keys[i] != k)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static void gs_add(rt_genset_t *s, uint64_t k)
{
	size_t i = gs_slot(s, k);
	if (s->gens[i] != s->gen && s->n * 2 + 2 < s->cap) {
		s->gens[i] = s->gen;
		s->keys[i] = k;
		s->n++;
	}
}

static bool gs_has(const rt_genset_t *s, uint64_t k)
{
	return s->cap > 0 && s->gens[gs_slot(s, k)] == s->gen;
}

/* ---- partitions -------------------------------------------------------------------------------------- */

static rt_part_t *part_get(rt_trigger_t *tr, int32_t p, bool create)
{
	if (p < 0 || p > 100000)
		return NULL;
	if (p >= tr->nparts) {
		if (!create)
			return NULL;
		int n = p + 1;
		tr->parts = realloc(tr->parts, (size_t)n * sizeof *tr->parts);
		for (int i = tr->nparts; i < n; i++)
			tr->parts[i] = NULL;
		tr->nparts = n;
	}
	if (tr->parts[p] == NULL && create) {
		rt_part_t *pt = calloc(1, sizeof *pt);
		pt->partition = p;
		pt->next_offset = -1;
		pt->committed = -1;
		pt->end = INT64_MAX;
		tr->parts[p] = pt;
	}
	return tr->parts[p];
}

static void part_drop(rt_trigger_t *tr, rt_part_t *p)
{
	for (size_t i = 0; i < p->q.n; i++)
		ev_free(tr, evq_at(&p->q, i));
	free(p->q.v);
	free(p->locks.keys);
	free(p->locks.counts);
	tr->parts[p->partition] = NULL;
	free(p);
}

/* Undone events a partition may hold before it is paused. Pausing makes librdkafka drop what it prefetched
 * and fetch it again on resume, so the bound is generous and resuming waits until a quarter is left. */
/* How many undone events a partition may hold before it is paused: a budget of TRIGGER_EVENTS per trigger
 * (about 100 MB of events), shared by its assigned partitions, at least two batches each. Large enough
 * that fetching rarely stops: every resume costs a refetch, and librdkafka 2.0 backs off for a second
 * when its own queue thresholds are hit, which made the pipeline idle most of the time. */
#define TRIGGER_EVENTS 200000
static void update_pending_cap(rt_trigger_t *tr)
{
	int n = 0;
	for (int i = 0; i < tr->nparts; i++)
		n += tr->parts[i] != NULL && tr->parts[i]->assigned;
	size_t floor = (size_t)tr->def->batch_size * 2 > 2000 ? (size_t)tr->def->batch_size * 2 : 2000;
	size_t cap = TRIGGER_EVENTS / (size_t)(n > 0 ? n : 1);
	tr->pending_cap = cap < floor ? floor : cap;
}

static size_t max_pending(const rt_trigger_t *tr)
{
	return tr->pending_cap > 0 ? tr->pending_cap : 20000;
}

/* What the consumer keeps prefetched (librdkafka's queue limits); see fetch_nudge. */
#define PREFETCH_RECORDS 100000
#define PREFETCH_KBYTES 8192
#define STR_(x) #x
#define STR(x) STR_(x)

static void part_pause(rt_trigger_t *tr, rt_part_t *p, bool pause)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, tr->def->stream, p->partition);
	if (pause)
		rd_kafka_pause_partitions(tr->consumer, l);
	else
		rd_kafka_resume_partitions(tr->consumer, l);
	rd_kafka_topic_partition_list_destroy(l);
	p->paused = pause;
	if (!pause && tr->nudges_left < tr->nparts)
		tr->nudges_left = tr->nparts; /* librdkafka fetches again only when its broker thread wakes */
}

/* ---- records in -------------------------------------------------------------------------------------- */

/* A replay's partition polled everything below its end: it fetches no further. */
static void part_reached_end(rt_trigger_t *tr, rt_part_t *p)
{
	p->at_end = true;
	if (!p->paused)
		part_pause(tr, p, true);
}

/* now_ms: the caller's clock, read once per few records (a clock read per record showed in perf). */
static void on_message(rt_trigger_t *tr, rd_kafka_message_t *m, int64_t now_ms)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && tr->rp != NULL) {
		rt_part_t *p = part_get(tr, m->partition, false);
		if (p != NULL && p->assigned && !p->at_end && m->offset >= p->end)
			part_reached_end(tr, p); /* a gap (control records) may end the range: EOF tells */
		rd_kafka_message_destroy(m);
		return;
	}
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			rt_fn_log(tr->fn, "trigger %s: %s", tr->def->stream, rd_kafka_message_errstr(m));
			pthread_mutex_lock(&tr->mu);
			snprintf(tr->state, sizeof tr->state, "error: %s", rd_kafka_message_errstr(m));
			pthread_mutex_unlock(&tr->mu);
		}
		rd_kafka_message_destroy(m);
		return;
	}
	rt_part_t *p = part_get(tr, m->partition, false);
	if (p == NULL || !p->assigned || (p->next_offset >= 0 && m->offset < p->next_offset)) {
		rd_kafka_message_destroy(m); /* revoked, or already seen */
		return;
	}
	if (m->offset >= p->end) { /* a replay's record past its range (prefetched) */
		if (!p->at_end)
			part_reached_end(tr, p);
		rd_kafka_message_destroy(m);
		return;
	}
	rt_fn_t *fn = tr->fn;
	tr->polled_bytes += (int64_t)(m->key_len + m->len); /* for fetch_nudge's estimate of the queue's bytes */
	tr->polled_n++;
	/* The event holds the message; its CloudEvent text is built by the worker that runs it (rt_ev_json). */
	rt_ev_t *ev = ev_new(tr);
	ev->msg = m;
	ev->offset = m->offset;
	ev->partition = m->partition;
	ev->ts_ms = rd_kafka_message_timestamp(m, NULL);
	ev->arrived_ms = now_ms;
	ev->split = tr->def->batch_size;
	ev->keyhash = m->key != NULL ? key_hash(m->key, m->key_len) : 0;
	ev->state = EV_QUEUED;
	atomic_fetch_add(&fn->stats.events_in, 1);
	if (tr->def->filter != NULL) {
		json_t *ce = rt_ev_ce(tr->def->stream, ev);
		if (!filter_match(tr->def->filter, ce)) {
			ev->state = EV_DONE;
			atomic_fetch_add(&fn->stats.filtered, 1);
		}
		json_decref(ce);
	}
	evq_push(&p->q, ev);
	p->next_offset = ev->offset + 1;
	if (p->next_offset >= p->end)
		part_reached_end(tr, p);
	else if (!p->paused && p->q.n >= max_pending(tr))
		part_pause(tr, p, true);
}

/* ---- dispatch ---------------------------------------------------------------------------------------- */

/* Gathers the next batch of p into tr->scratch. Returns its size (0: nothing to run now; *wake_ms lowered
 * to when something may become runnable). */
static int build_batch(rt_trigger_t *tr, rt_part_t *p, int64_t now, int64_t *wake_ms)
{
	const fn_trigger_t *d = tr->def;
	bool by_key = d->ordering == FN_ORDER_KEY;
	int cap = d->batch_size, n = 0;
	int64_t first = 0;
	if (by_key)
		gs_reset(&tr->scan_blocked, p->q.n);
	for (size_t i = 0; i < p->q.n && n < cap; i++) {
		rt_ev_t *ev = evq_at(&p->q, i);
		if (ev->state == EV_DONE || ev->state == EV_INFLIGHT)
			continue;
		if (ev->state == EV_DEAD || (ev->state == EV_RETRY && ev->ready_ms > now)) {
			if (ev->state == EV_RETRY && ev->ready_ms < *wake_ms)
				*wake_ms = ev->ready_ms;
			if (d->ordering == FN_ORDER_PARTITION)
				break; /* nothing overtakes it */
			if (by_key && ev->keyhash)
				gs_add(&tr->scan_blocked, ev->keyhash);
			continue;
		}
		if (by_key && ev->keyhash &&
		    (ks_has(&p->locks, ev->keyhash) || gs_has(&tr->scan_blocked, ev->keyhash))) {
			gs_add(&tr->scan_blocked, ev->keyhash);
			continue;
		}
		int ncap = ev->split < cap ? ev->split : cap;
		if (n + 1 > ncap)
			break;
		cap = ncap;
		if (n == 0)
			first = ev->arrived_ms;
		tr->scratch[n++] = ev;
	}
	if (n > 0 && n < cap && d->batch_window_ms > 0 && !p->paused && now < first + d->batch_window_ms) {
		if (first + d->batch_window_ms < *wake_ms)
			*wake_ms = first + d->batch_window_ms;
		return 0;
	}
	return n;
}

static void dispatch(rt_trigger_t *tr, rt_part_t *p, int n)
{
	rt_job_t *job = calloc(1, sizeof *job);
	job->dr.kind = JOB_INVOKE;
	job->tr = tr;
	job->part = p;
	job->n = n;
	job->id = ++tr->next_job_id;
	job->evs = malloc((size_t)n * sizeof *job->evs);
	for (int i = 0; i < n; i++) {
		rt_ev_t *ev = tr->scratch[i];
		job->evs[i] = ev;
		ev->state = EV_INFLIGHT;
		if (tr->def->ordering == FN_ORDER_KEY && ev->keyhash)
			ks_add(&p->locks, ev->keyhash);
	}
	p->inflight++;
	rt_pool_submit(tr->fn, job);
}

static void dead_letter_send(rt_trigger_t *tr, rt_part_t *p, rt_ev_t *ev)
{
	rt_job_t *job = calloc(1, sizeof *job);
	job->dr.kind = JOB_DEAD_LETTER;
	job->tr = tr;
	job->part = p;
	job->n = 1;
	job->evs = malloc(sizeof *job->evs);
	job->evs[0] = ev;
	ev->dl_inflight = true;
	p->dead_waiting--;
	p->dead_inflight++;
	if (rt_produce_dead_letter(job, tr->def->on_failure) != OK) {
		job->status = 1;
		job->error = strdup("the producer refused the dead letter");
		rt_trigger_post(job);
	}
}

static void schedule(rt_trigger_t *tr, int64_t *wake_ms)
{
	int64_t now = rt_now_ms();
	int limit = tr->def->ordering == FN_ORDER_PARTITION ? 1 : tr->def->concurrency;
	bool room = true;
	int start = tr->nparts > 0 ? tr->rr++ % tr->nparts : 0;
	for (int j = 0; j < tr->nparts; j++) {
		int i = (start + j) % tr->nparts;
		rt_part_t *p = tr->parts[i];
		if (p == NULL || !p->assigned)
			continue;
		if (p->dead_waiting > 0) {
			for (size_t k = 0; k < p->q.n; k++) {
				rt_ev_t *ev = evq_at(&p->q, k);
				if (ev->state != EV_DEAD || ev->dl_inflight)
					continue;
				if (ev->ready_ms <= now)
					dead_letter_send(tr, p, ev);
				else if (ev->ready_ms < *wake_ms)
					*wake_ms = ev->ready_ms;
			}
		}
		while (room && p->inflight < limit) {
			/* Hold back while the pool's queue is full: the events wait here and join a bigger batch. */
			if (!rt_pool_has_room(tr->fn)) {
				room = false;
				break;
			}
			int n = build_batch(tr, p, now, wake_ms);
			if (n == 0)
				break;
			dispatch(tr, p, n);
		}
	}
}

/* ---- results ----------------------------------------------------------------------------------------- */

static int64_t backoff_ms(const fn_trigger_t *d, int attempts)
{
	int64_t cap = d->retry_base_ms;
	for (int i = 1; i < attempts && cap < d->retry_max_ms; i++)
		cap *= 2;
	if (cap > d->retry_max_ms)
		cap = d->retry_max_ms;
	return (int64_t)(((uint64_t)random() << 31 ^ (uint64_t)random()) % (uint64_t)(cap + 1)); /* full jitter */
}

static void go_dead(rt_trigger_t *tr, rt_part_t *p, rt_ev_t *ev)
{
	rt_fn_t *fn = tr->fn;
	if (tr->def->on_failure == NULL) {
		rt_fn_log(fn, "discarded %s/%d/%" PRId64 " after %d attempts: %s", tr->def->stream, p->partition,
			  ev->offset, ev->attempts, ev->error ? ev->error : "?");
		atomic_fetch_add(&fn->stats.discarded, 1);
		ev->state = EV_DONE;
		return;
	}
	ev->state = EV_DEAD;
	ev->dl_inflight = false;
	ev->ready_ms = 0;
	p->dead_waiting++;
}

static void fail_event(rt_trigger_t *tr, rt_part_t *p, rt_ev_t *ev, const char *error, bool counted)
{
	const fn_trigger_t *d = tr->def;
	free(ev->error);
	ev->error = strndup(error ? error : "failed", 1024); /* a header of the dead letter: keep it small */
	if (!counted) {
		ev->state = EV_QUEUED;
		return;
	}
	ev->attempts++;
	int64_t wall = rt_wall_ms();
	bool too_old = d->max_age_ms > 0 && ev->ts_ms > 0 && wall - ev->ts_ms > d->max_age_ms;
	if (ev->attempts >= d->retry_attempts || too_old) {
		go_dead(tr, p, ev);
		return;
	}
	atomic_fetch_add(&tr->fn->stats.retries, 1);
	ev->state = EV_RETRY;
	ev->ready_ms = rt_now_ms() + backoff_ms(d, ev->attempts);
}

static void job_free(rt_job_t *job)
{
	free(job->evs);
	free(job->error);
	free(job->failed);
	free(job);
}

static void on_invoke_done(rt_trigger_t *tr, rt_job_t *job)
{
	rt_part_t *p = job->part;
	rt_fn_t *fn = tr->fn;
	bool by_key = tr->def->ordering == FN_ORDER_KEY;
	/* A failure while stopping (emits purged by the stop, or anything else once told to stop) is not
	 * counted against the events: they stay undone, uncommitted, and run again after the restart,
	 * instead of being discarded or dead-lettered for the stop's sake. */
	bool counted = !job->purged && !atomic_load(&tr->stop);
	p->inflight--;
	for (int i = 0; i < job->n; i++)
		if (by_key && job->evs[i]->keyhash)
			ks_del(&p->locks, job->evs[i]->keyhash);
	if (job->status == 0) {
		for (int i = 0; i < job->n; i++)
			job->evs[i]->state = EV_DONE;
		atomic_fetch_add(&fn->stats.events_ok, job->n);
	} else if (job->status == 2) {
		/* listed failures retry; in key order, what came after them with their key redoes too */
		char *mark = calloc(job->n > 0 ? (size_t)job->n : 1, 1);
		for (int k = 0; k < job->nfailed; k++)
			mark[job->failed[k]] = 2;
		bool by_part = tr->def->ordering == FN_ORDER_PARTITION;
		for (int i = 0; i < job->n; i++)
			if (mark[i] == 2 && (by_part || (by_key && job->evs[i]->keyhash)))
				for (int j = i + 1; j < job->n; j++)
					if (!mark[j] && (by_part || job->evs[j]->keyhash == job->evs[i]->keyhash))
						mark[j] = 1;
		for (int i = 0; i < job->n; i++) {
			if (mark[i] == 0) {
				job->evs[i]->state = EV_DONE;
				atomic_fetch_add(&fn->stats.events_ok, 1);
			} else {
				fail_event(tr, p, job->evs[i], job->error, mark[i] == 2 && counted);
			}
		}
		free(mark);
	} else if (job->n > 1) {
		atomic_fetch_add(&fn->stats.bisections, 1);
		rt_fn_log(fn, "batch of %d from %s/%d at %" PRId64 " failed (%s); splitting it", job->n,
			  tr->def->stream, p->partition, job->evs[0]->offset, job->error ? job->error : "?");
		for (int i = 0; i < job->n; i++) {
			rt_ev_t *ev = job->evs[i];
			ev->split = (job->n + 1) / 2 < ev->split ? (job->n + 1) / 2 : ev->split;
			ev->state = EV_QUEUED;
		}
	} else {
		rt_fn_log(fn, "event %s/%d/%" PRId64 " failed (attempt %d): %s", tr->def->stream, p->partition,
			  job->evs[0]->offset, job->evs[0]->attempts + 1, job->error ? job->error : "?");
		fail_event(tr, p, job->evs[0], job->error, counted);
	}
	job_free(job);
}

static void on_dead_letter_done(rt_trigger_t *tr, rt_job_t *job)
{
	rt_part_t *p = job->part;
	rt_ev_t *ev = job->evs[0];
	p->dead_inflight--;
	ev->dl_inflight = false;
	if (job->status == 0) {
		ev->state = EV_DONE;
		atomic_fetch_add(&tr->fn->stats.dead_lettered, 1);
		rt_fn_log(tr->fn, "dead-lettered %s/%d/%" PRId64 " to %s after %d attempts: %s", tr->def->stream,
			  p->partition, ev->offset, tr->def->on_failure, ev->attempts, ev->error ? ev->error : "?");
	} else {
		rt_fn_log(tr->fn, "dead letter to %s failed (%s); trying again in 1 s", tr->def->on_failure,
			  job->error ? job->error : "?");
		p->dead_waiting++;
		ev->ready_ms = rt_now_ms() + 1000;
	}
	job_free(job);
}

void rt_trigger_post(rt_job_t *job)
{
	rt_trigger_t *tr = job->tr;
	job->next = NULL;
	pthread_mutex_lock(&tr->mu);
	if (tr->done_tail)
		tr->done_tail->next = job;
	else
		tr->done_head = job;
	tr->done_tail = job;
	atomic_store_explicit(&tr->done_ready, true, memory_order_relaxed);
	pthread_cond_broadcast(&tr->cond);
	/* under the lock: once the consumer has taken every job, no poster still touches tr */
	rd_kafka_queue_yield(tr->cq);
	pthread_mutex_unlock(&tr->mu);
}

static bool take_done(rt_trigger_t *tr)
{
	pthread_mutex_lock(&tr->mu);
	rt_job_t *j = tr->done_head;
	tr->done_head = tr->done_tail = NULL;
	atomic_store_explicit(&tr->done_ready, false, memory_order_relaxed);
	pthread_mutex_unlock(&tr->mu);
	bool any = j != NULL;
	while (j != NULL) {
		rt_job_t *next = j->next;
		if (j->dr.kind == JOB_DEAD_LETTER)
			on_dead_letter_done(tr, j);
		else
			on_invoke_done(tr, j);
		j = next;
	}
	return any;
}

/* ---- positions --------------------------------------------------------------------------------------- */

/* Pops done events off the head; returns the partition's commit position (-1: nothing to commit). */
static int64_t part_position(rt_trigger_t *tr, rt_part_t *p)
{
	while (p->q.n > 0 && evq_at(&p->q, 0)->state == EV_DONE) {
		ev_free(tr, evq_at(&p->q, 0));
		evq_pop(&p->q);
	}
	if (p->paused && !p->at_end && p->q.n <= max_pending(tr) / 4)
		part_pause(tr, p, false);
	return p->q.n > 0 ? evq_at(&p->q, 0)->offset : p->next_offset;
}

/* Commits each partition's position that moved; returns whether it committed anything. */
static bool commit(rt_trigger_t *tr, bool sync, bool only_unassigned)
{
	rd_kafka_topic_partition_list_t *l = NULL;
	for (int i = 0; i < tr->nparts; i++) {
		rt_part_t *p = tr->parts[i];
		if (p == NULL || (only_unassigned && p->assigned))
			continue;
		int64_t pos = part_position(tr, p);
		if (pos < 0 || pos <= p->committed)
			continue;
		if (l == NULL)
			l = rd_kafka_topic_partition_list_new(4);
		rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_add(l, tr->def->stream, p->partition);
		t->offset = pos;
		if (tr->rp != NULL) { /* the range's end: a later replay resumes only an unfinished one */
			char md[64];
			int n = snprintf(md, sizeof md, RT_REPLAY_METADATA "%" PRId64, p->end);
			t->metadata = strdup(md); /* the list frees it */
			t->metadata_size = (size_t)n;
		}
		p->committed = pos;
	}
	if (l == NULL)
		return false;
	rd_kafka_resp_err_t e = rd_kafka_commit(tr->consumer, l, sync ? 0 : 1);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rt_fn_log(tr->fn, "commit failed: %s", rd_kafka_err2str(e));
		for (int i = 0; i < l->cnt; i++) {
			rt_part_t *p = part_get(tr, l->elems[i].partition, false);
			if (p != NULL)
				p->committed = -1;
		}
	} else if (!sync) {
		tr->commit_inflight = true;
	}
	rd_kafka_topic_partition_list_destroy(l);
	return true;
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
		      void *opaque)
{
	(void)rk;
	rt_trigger_t *tr = opaque;
	tr->commit_inflight = false;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	rt_fn_log(tr->fn, "commit failed: %s", rd_kafka_err2str(err));
	for (int i = 0; offsets != NULL && i < offsets->cnt; i++) {
		rt_part_t *p = part_get(tr, offsets->elems[i].partition, false);
		if (p != NULL)
			p->committed = -1; /* commit again */
	}
}

/* Waits (serving results) until the given partitions have nothing in flight, or the deadline. */
/* Waits (serving results) until the given partitions have nothing in flight. Partitions are freed only
 * after this, so it never gives up on a job: past the deadline it takes back this trigger's jobs still
 * queued for a worker (they come back failed, and, being unassigned, are not run again); running jobs end
 * within the function's timeout, dead letters within the producer's message timeout. */
static void drain(rt_trigger_t *tr, bool only_unassigned)
{
	int64_t deadline = rt_now_ms() + tr->fn->rt->opts.stop_timeout_ms;
	bool cancelled = false;
	for (;;) {
		take_done(tr);
		int busy = 0;
		for (int i = 0; i < tr->nparts; i++) {
			rt_part_t *p = tr->parts[i];
			if (p != NULL && (!only_unassigned || !p->assigned))
				busy += p->inflight + p->dead_inflight;
		}
		if (busy == 0)
			break;
		if (!cancelled && rt_now_ms() > deadline) {
			int n = rt_pool_cancel(tr->fn, tr, only_unassigned);
			if (n > 0)
				rt_fn_log(tr->fn, "stopping: %d batch(es) still waiting for a worker were not run", n);
			cancelled = true;
		}
		pthread_mutex_lock(&tr->mu);
		if (tr->done_head == NULL) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&tr->cond, &tr->mu, &ts);
		}
		pthread_mutex_unlock(&tr->mu);
	}
}

/* ---- rebalances -------------------------------------------------------------------------------------- */

static void start_positions(rt_trigger_t *tr, rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
	if (rd_kafka_committed(tr->consumer, c, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(c->cnt);
		for (int i = 0; i < c->cnt; i++)
			if (c->elems[i].offset < 0)
				rd_kafka_topic_partition_list_add(q, c->elems[i].topic, c->elems[i].partition)->offset =
					tr->def->start_time_ms;
		if (q->cnt > 0 && rd_kafka_offsets_for_times(tr->consumer, q, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			for (int i = 0; i < q->cnt; i++) {
				rd_kafka_topic_partition_t *t =
					rd_kafka_topic_partition_list_find(parts, q->elems[i].topic, q->elems[i].partition);
				if (t != NULL && q->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
					t->offset = q->elems[i].offset >= 0 ? q->elems[i].offset : RD_KAFKA_OFFSET_END;
			}
		}
		rd_kafka_topic_partition_list_destroy(q);
	}
	rd_kafka_topic_partition_list_destroy(c);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
			 void *opaque)
{
	rt_trigger_t *tr = opaque;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		for (int i = 0; i < parts->cnt; i++) {
			rt_part_t *p = part_get(tr, parts->elems[i].partition, true);
			if (p != NULL)
				p->assigned = true;
		}
		/* where the group stands, for lag, until this member commits */
		rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
		if (rd_kafka_committed(rk, c, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
			for (int i = 0; i < c->cnt; i++) {
				rt_part_t *p = part_get(tr, c->elems[i].partition, false);
				if (p != NULL && c->elems[i].offset >= 0)
					p->committed = c->elems[i].offset;
			}
		rd_kafka_topic_partition_list_destroy(c);
		if (tr->def->start == FN_START_TIME)
			start_positions(tr, parts);
		update_pending_cap(tr);
		rd_kafka_assign(rk, parts);
		rd_kafka_resume_partitions(rk, parts); /* librdkafka remembers a pause across a reassignment */
		rt_fn_log(tr->fn, "trigger %s: assigned %d partition(s)", tr->def->stream, parts->cnt);
		return;
	}
	for (int i = 0; i < parts->cnt; i++) {
		rt_part_t *p = part_get(tr, parts->elems[i].partition, false);
		if (p != NULL)
			p->assigned = false;
	}
	update_pending_cap(tr);
	drain(tr, true);
	commit(tr, true, true);
	for (int i = 0; i < tr->nparts; i++)
		if (tr->parts[i] != NULL && !tr->parts[i]->assigned)
			part_drop(tr, tr->parts[i]);
	rd_kafka_assign(rk, NULL);
	if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
		rt_fn_log(tr->fn, "trigger %s: rebalance error %s", tr->def->stream, rd_kafka_err2str(err));
}

/* ---- the loop ---------------------------------------------------------------------------------------- */

/* A partition's first offset not done yet, without changing anything (-1: nothing polled yet). */
static int64_t part_peek(const rt_part_t *p)
{
	for (size_t i = 0; i < p->q.n; i++)
		if (evq_at(&p->q, i)->state != EV_DONE)
			return evq_at(&p->q, i)->offset;
	return p->next_offset;
}

/* Notes a replay's progress for introspection: each partition's first undone offset within its range. */
static void replay_progress(rt_trigger_t *tr)
{
	rt_replay_t *rp = tr->rp;
	bool finished = atomic_load(&tr->finished);
	int64_t done = 0;
	pthread_mutex_lock(&rp->mu);
	for (int i = 0; i < rp->nparts; i++) {
		rt_rp_part_t *r = &rp->parts[i];
		rt_part_t *p = part_get(tr, r->partition, false);
		int64_t pos = finished ? r->end : p != NULL ? part_peek(p) : r->from;
		if (pos < r->from)
			pos = r->from;
		if (pos > r->end)
			pos = r->end;
		r->pos = pos;
		done += pos - r->from;
	}
	rp->done = done;
	pthread_cond_broadcast(&rp->cond);
	pthread_mutex_unlock(&rp->mu);
}

/* Whether every partition of the replay polled up to its end and has nothing left undone or in flight. */
static bool replay_finished(rt_trigger_t *tr)
{
	for (int i = 0; i < tr->nparts; i++) {
		rt_part_t *p = tr->parts[i];
		if (p == NULL || !p->assigned)
			continue;
		part_position(tr, p); /* drops the done head */
		if (!p->at_end || p->q.n > 0 || p->inflight > 0 || p->dead_inflight > 0)
			return false;
	}
	return true;
}

/* Assigns the replay's ranges (partitions with an empty range are left out). */
static void replay_assign(rt_trigger_t *tr)
{
	rt_replay_t *rp = tr->rp;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rp->nparts > 0 ? rp->nparts : 1);
	for (int i = 0; i < rp->nparts; i++) {
		const rt_rp_part_t *r = &rp->parts[i];
		if (r->from >= r->end)
			continue;
		rt_part_t *p = part_get(tr, r->partition, true);
		if (p == NULL)
			continue;
		p->assigned = true;
		p->end = r->end;
		p->committed = r->from; /* nothing to commit until it moves */
		rd_kafka_topic_partition_list_add(l, tr->def->stream, r->partition)->offset = r->from;
	}
	update_pending_cap(tr);
	rd_kafka_resp_err_t e = rd_kafka_assign(tr->consumer, l);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		rt_fn_log(tr->fn, "replay of %s: assign failed: %s", tr->def->stream, rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(l);
}

static void snapshot(rt_trigger_t *tr)
{
	int n = 0;
	rt_part_snap_t *s = calloc((size_t)tr->nparts + 1, sizeof *s);
	for (int i = 0; i < tr->nparts; i++) {
		rt_part_t *p = tr->parts[i];
		if (p == NULL)
			continue;
		int64_t lo = -1, hi = -1;
		rd_kafka_get_watermark_offsets(tr->consumer, tr->def->stream, p->partition, &lo, &hi);
		s[n++] = (rt_part_snap_t){ .partition = p->partition, .committed = p->committed, .high = hi,
					   .queued = (int64_t)p->q.n, .inflight = p->inflight, .paused = p->paused };
	}
	pthread_mutex_lock(&tr->mu);
	free(tr->snap);
	tr->snap = s;
	tr->nsnap = n;
	if (strncmp(tr->state, "error", 5) != 0 || n > 0)
		snprintf(tr->state, sizeof tr->state, "running");
	pthread_mutex_unlock(&tr->mu);
}

static void subscribe(rt_trigger_t *tr)
{
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, tr->def->stream, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t e = rd_kafka_subscribe(tr->consumer, sub);
	rd_kafka_topic_partition_list_destroy(sub);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		rt_fn_log(tr->fn, "subscribe to %s failed: %s", tr->def->stream, rd_kafka_err2str(e));
}

/* librdkafka 2.0 stops fetching a partition while its queue is over queued.min.messages or
 * queued.max.messages.kbytes, and only looks again when its broker thread next wakes up: on network or
 * control traffic, else after up to a second (later versions have fetch.queue.backoff.ms for this). Resuming
 * a paused partition waits for that wake-up too. A local broker fills the queue in milliseconds, so a fast
 * function drained it and then waited most of that second (bench/functions.sh: 321k events/s with the
 * pipeline idle half the time). So once the queue has come near those limits (or a partition resumed), and
 * has then drained low while a partition has records we have not seen, the trigger asks that partition's
 * leader for its watermarks: the request wakes the broker thread, which sees room and fetches. One request
 * every FETCH_NUDGE_MS, a partition at a time (their leaders may differ), each partition at most once per
 * arming; a second's pause after a failed one. Live traffic that never fills the queue never pays it. */
#define FETCH_NUDGE_MS 10

/* The request itself runs on a helper thread (nudge_main): waiting for its round trip in the loop, behind
 * the broker thread's work on a big fetch, held up the loop for a fifth of a busy run (finished jobs waited
 * for it). The loop only hands over a partition; one request at a time. */
typedef struct rt_nudger {
	rt_trigger_t *tr;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int32_t partition;       /* requested; -1: none */
	bool busy;               /* a request is asked for or in flight */
	bool stop;
	int64_t next_ms;         /* no request before then (monotonic) */
} rt_nudger_t;

static void *nudge_main(void *arg)
{
	rt_nudger_t *n = arg;
	fl_thread_name("fl-trig-nudge");
	pthread_mutex_lock(&n->mu);
	for (;;) {
		while (!n->stop && n->partition < 0)
			pthread_cond_wait(&n->cond, &n->mu);
		if (n->stop)
			break;
		int32_t part = n->partition;
		n->partition = -1;
		pthread_mutex_unlock(&n->mu);
		int64_t lo = -1, hi = -1;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(n->tr->consumer, n->tr->def->stream, part,
									 &lo, &hi, 100);
		pthread_mutex_lock(&n->mu);
		n->next_ms = rt_now_ms() + (e == RD_KAFKA_RESP_ERR_NO_ERROR ? FETCH_NUDGE_MS : 1000);
		n->busy = false;
	}
	pthread_mutex_unlock(&n->mu);
	return NULL;
}

static void nudger_start(rt_trigger_t *tr, rt_nudger_t *n)
{
	*n = (rt_nudger_t){ .tr = tr, .partition = -1 };
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cond, NULL);
	if (pthread_create(&n->thread, NULL, nudge_main, n) != 0) {
		rt_fn_log(tr->fn, "cannot start the fetch nudge thread: records may arrive up to a second late");
		return; /* tr->nudger stays NULL: fetch_nudge does nothing */
	}
	tr->nudger = n;
}

/* Before the consumer closes: a request in flight ends within its 100 ms timeout. */
static void nudger_stop(rt_trigger_t *tr, rt_nudger_t *n)
{
	if (tr->nudger == n) {
		pthread_mutex_lock(&n->mu);
		n->stop = true;
		pthread_cond_signal(&n->cond);
		pthread_mutex_unlock(&n->mu);
		pthread_join(n->thread, NULL);
		tr->nudger = NULL;
	}
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cond);
}

static void fetch_nudge(rt_trigger_t *tr)
{
	rt_nudger_t *n = tr->nudger;
	int64_t queued = (int64_t)rd_kafka_queue_length(tr->cq);
	int64_t avg = tr->polled_n > 0 ? tr->polled_bytes / tr->polled_n + 1 : 1;
	if (queued >= PREFETCH_RECORDS / 4 || queued * avg >= PREFETCH_KBYTES * 1024 / 4) {
		tr->nudges_left = tr->nparts; /* near the limits: the fetcher may stop */
		return;
	}
	if (n == NULL || tr->nudges_left <= 0 || queued >= PREFETCH_RECORDS / 5 ||
	    queued * avg >= PREFETCH_KBYTES * 1024 / 5)
		return;
	pthread_mutex_lock(&n->mu);
	bool ready = !n->busy && rt_now_ms() >= n->next_ms;
	pthread_mutex_unlock(&n->mu);
	if (!ready)
		return;
	for (int j = 0; j < tr->nparts; j++) {
		rt_part_t *p = tr->parts[tr->nudge_rr++ % tr->nparts];
		if (p == NULL || !p->assigned || p->paused || p->at_end || p->next_offset < 0)
			continue;
		int64_t lo = -1, hi = -1; /* as of the last fetch response */
		rd_kafka_get_watermark_offsets(tr->consumer, tr->def->stream, p->partition, &lo, &hi);
		if ((hi < p->end ? hi : p->end) - p->next_offset <= queued)
			continue;
		pthread_mutex_lock(&n->mu);
		n->partition = p->partition;
		n->busy = true;
		pthread_cond_signal(&n->cond);
		pthread_mutex_unlock(&n->mu);
		tr->nudges_left--;
		return;
	}
	tr->nudges_left = 0; /* nothing left to fetch */
}

/* Commits start at most this often (one is in flight at a time). Each is a durable write in the group
 * coordinator; back to back they came about 1,000 a second under load, and a waiter on the group (the
 * HTTP wait endpoint) sees a position at most this much later. */
#define COMMIT_MIN_NS 5000000

static void *trigger_main(void *arg)
{
	rt_trigger_t *tr = arg;
	fl_thread_name("fl-trigger");
	rt_nudger_t nudger;
	nudger_start(tr, &nudger);
	if (tr->rp != NULL)
		replay_assign(tr);
	else
		subscribe(tr);
	while (!atomic_load(&tr->stop)) {
		take_done(tr);
		int64_t wake = rt_now_ms() + 100;
		schedule(tr, &wake);
		if (tr->rp != NULL && replay_finished(tr)) {
			commit(tr, true, false); /* every range's end, before it says so */
			atomic_store(&tr->finished, true);
			replay_progress(tr);
			break;
		}
		int64_t now_ns = rt_now_ns();
		if (!tr->commit_inflight && now_ns - tr->last_commit_ns >= COMMIT_MIN_NS) {
			if (commit(tr, false, false))
				tr->last_commit_ns = now_ns;
		} else if (!tr->commit_inflight) {
			int64_t due_ms = (tr->last_commit_ns + COMMIT_MIN_NS) / 1000000 + 1;
			if (due_ms < wake)
				wake = due_ms;
		}
		if (now_ns - tr->last_snap_ns > 200000000) {
			snapshot(tr);
			if (tr->rp != NULL)
				replay_progress(tr);
			tr->last_snap_ns = now_ns;
		}
		int64_t timeout = wake - rt_now_ms();
		pthread_mutex_lock(&tr->mu);
		if (tr->done_head != NULL)
			timeout = 0;
		pthread_mutex_unlock(&tr->mu);
		rd_kafka_message_t *m = rd_kafka_consumer_poll(tr->consumer, (int)(timeout < 0 ? 0 : timeout));
		int64_t now_ms = rt_now_ms();
		for (int k = 0; m != NULL && k < 10000; k++) {
			on_message(tr, m, now_ms);
			/* A finished job frees a worker: schedule before polling on. Taking 10,000 records first
			 * (tens of milliseconds) left the workers idle and the function's throughput capped. */
			bool done = false;
			if ((k & 63) == 63) {
				done = atomic_load_explicit(&tr->done_ready, memory_order_relaxed);
				now_ms = rt_now_ms();
			}
			m = k + 1 < 10000 && !done ? rd_kafka_consumer_poll(tr->consumer, 0) : NULL;
		}
		fetch_nudge(tr);
	}
	for (int i = 0; i < tr->nparts; i++)
		if (tr->parts[i] != NULL)
			tr->parts[i]->assigned = false;
	drain(tr, false);
	commit(tr, true, false);
	nudger_stop(tr, &nudger);
	rd_kafka_consumer_close(tr->consumer);
	for (int i = 0; i < tr->nparts; i++)
		if (tr->parts[i] != NULL)
			part_drop(tr, tr->parts[i]);
	return NULL;
}

err_t rt_trigger_open(rt_trigger_t *tr, char *err, size_t errcap)
{
	if (tr->consumer != NULL)
		return OK;
	const fn_trigger_t *d = tr->def;
	bool replay = tr->rp != NULL;
	char errstr[512];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	char cid[200];
	snprintf(cid, sizeof cid, "factlog-fn-%s%s", tr->fn->def->name, replay ? "-replay" : "");
	const char *kv[][2] = {
		{ "bootstrap.servers", tr->fn->rt->bootstrap },
		{ "group.id", tr->group != NULL ? tr->group : d->group },
		{ "client.id", cid },
		{ "enable.auto.commit", "false" },
		{ "enable.auto.offset.store", "false" },
		/* a replay assigns explicit offsets; one below the log start (retention) begins at the start */
		{ "auto.offset.reset", replay || d->start == FN_START_EARLIEST ? "earliest" : "latest" },
		/* a replay learns that a range ends in a gap (control records) from the end-of-partition event */
		{ "enable.partition.eof", replay ? "true" : "false" },
		{ "fetch.wait.max.ms", "100" },
		{ "fetch.error.backoff.ms", "100" },
		{ "queued.max.messages.kbytes", STR(PREFETCH_KBYTES) },
		{ "queued.min.messages", STR(PREFETCH_RECORDS) },
		{ "topic.metadata.refresh.interval.ms", "5000" },
		{ "session.timeout.ms", "10000" },
		{ "heartbeat.interval.ms", "1000" },
		{ "log_level", "3" },
	};
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
			snprintf(err, errcap, "%s: %s", kv[i][0], errstr);
			rd_kafka_conf_destroy(c);
			return ERR_INVALID;
		}
	rd_kafka_conf_set_opaque(c, tr);
	if (!replay)
		rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
	rd_kafka_conf_set_offset_commit_cb(c, on_commit);
	tr->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, sizeof errstr);
	if (tr->consumer == NULL) {
		snprintf(err, errcap, "consumer: %s", errstr);
		return ERR_INVALID;
	}
	rd_kafka_poll_set_consumer(tr->consumer);
	tr->cq = rd_kafka_queue_get_consumer(tr->consumer);
	return OK;
}

static void mu_init(rt_trigger_t *tr)
{
	if (!tr->mu_ready) {
		pthread_mutex_init(&tr->mu, NULL);
		pthread_cond_init(&tr->cond, NULL);
		tr->mu_ready = true;
	}
}

err_t rt_trigger_start(rt_trigger_t *tr, char *err, size_t errcap)
{
	ASSERT(!tr->thread_started);
	rt_trigger_set_state(tr, "starting");
	/* a trigger started again begins with a clean slate (rt_trigger_stop freed what it had) */
	atomic_store(&tr->stop, false);
	atomic_store(&tr->finished, false);
	tr->done_head = tr->done_tail = NULL;
	tr->commit_inflight = false;
	tr->last_snap_ns = 0;
	tr->nudges_left = 0;
	tr->polled_bytes = tr->polled_n = 0;
	err_t rc = rt_trigger_open(tr, err, errcap);
	if (rc != OK)
		return rc;
	tr->scratch = calloc((size_t)tr->def->batch_size, sizeof *tr->scratch);
	if (pthread_create(&tr->thread, NULL, trigger_main, tr) != 0) {
		snprintf(err, errcap, "cannot start a consumer thread");
		return ERR_SYS(EAGAIN);
	}
	tr->thread_started = true;
	return OK;
}

void rt_trigger_stop(rt_trigger_t *tr)
{
	bool closed = tr->thread_started; /* the thread closes the consumer as it leaves */
	if (tr->thread_started) {
		atomic_store(&tr->stop, true);
		rd_kafka_queue_yield(tr->cq);
		pthread_join(tr->thread, NULL);
		tr->thread_started = false;
	}
	if (tr->consumer != NULL) {
		rd_kafka_queue_destroy(tr->cq);
		tr->cq = NULL;
		/* Not a second close: librdkafka 2.0.2 was seen to wait forever in one (under rd_kafka_destroy)
		 * after rd_kafka_consumer_close had returned. */
		rd_kafka_destroy_flags(tr->consumer, closed ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
		tr->consumer = NULL;
	}
	free(tr->parts);
	tr->parts = NULL;
	tr->nparts = 0;
	free(tr->scratch);
	tr->scratch = NULL;
	while (tr->ev_cached > 0)
		free(tr->ev_cache[--tr->ev_cached]);
	free(tr->ev_cache);
	tr->ev_cache = NULL;
	free(tr->scan_blocked.keys);
	free(tr->scan_blocked.gens);
	memset(&tr->scan_blocked, 0, sizeof tr->scan_blocked);
	if (tr->mu_ready) {
		pthread_mutex_lock(&tr->mu);
		free(tr->snap);
		tr->snap = NULL;
		tr->nsnap = 0;
		snprintf(tr->state, sizeof tr->state, "stopped");
		pthread_mutex_unlock(&tr->mu);
	}
}

void rt_trigger_fini(rt_trigger_t *tr)
{
	rt_trigger_stop(tr);
	if (tr->mu_ready) {
		pthread_mutex_destroy(&tr->mu);
		pthread_cond_destroy(&tr->cond);
		tr->mu_ready = false;
	}
}

void rt_trigger_set_state(rt_trigger_t *tr, const char *state)
{
	mu_init(tr); /* also for a trigger never started (held for a recovered replay) */
	pthread_mutex_lock(&tr->mu);
	snprintf(tr->state, sizeof tr->state, "%s", state);
	pthread_mutex_unlock(&tr->mu);
}

json_t *rt_trigger_json(rt_trigger_t *tr)
{
	const fn_trigger_t *d = tr->def;
	json_t *o = json_object();
	json_object_set_new(o, "stream", json_string(d->stream));
	json_object_set_new(o, "group", json_string(d->group));
	json_object_set_new(o, "ordering", json_string(fn_ordering_name(d->ordering)));
	json_object_set_new(o, "batch_size", json_integer(d->batch_size));
	json_object_set_new(o, "concurrency", json_integer(d->concurrency));
	if (d->on_failure)
		json_object_set_new(o, "on_failure", json_string(d->on_failure));
	json_t *parts = json_array();
	int64_t lag = 0;
	pthread_mutex_lock(&tr->mu);
	json_object_set_new(o, "state", json_string(tr->state));
	for (int i = 0; i < tr->nsnap; i++) {
		rt_part_snap_t *s = &tr->snap[i];
		int64_t l = s->high >= 0 && s->committed >= 0 ? s->high - s->committed : s->high >= 0 ? s->high : 0;
		lag += l > 0 ? l : 0;
		json_t *pj = json_object();
		json_object_set_new(pj, "partition", json_integer(s->partition));
		json_object_set_new(pj, "committed", json_integer(s->committed));
		json_object_set_new(pj, "high_watermark", json_integer(s->high));
		json_object_set_new(pj, "lag", json_integer(l > 0 ? l : 0));
		json_object_set_new(pj, "queued", json_integer(s->queued));
		json_object_set_new(pj, "in_flight", json_integer(s->inflight));
		json_object_set_new(pj, "paused", json_boolean(s->paused));
		json_array_append_new(parts, pj);
	}
	pthread_mutex_unlock(&tr->mu);
	json_object_set_new(o, "lag", json_integer(lag));
	json_object_set_new(o, "partitions", parts);
	return o;
}
