/* api_data.c -- Produce, Fetch and ListOffsets: the data path. */
#include <inttypes.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/compat.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "kafka/kafka_int.h"
#include "storage/recordbatch.h"

/* ---------------------------------------------------------------- Produce */

typedef struct produce_part produce_part_t;
struct produce_part {
	partition_waiter_t w; /* first: the waiter callback casts back */
	loop_task_t task;
	kreq_t *req;
	err_t wait_status;
	int32_t topic;  /* index into names */
	int32_t index;
	int16_t err;
	int64_t base_offset, log_append_time, log_start;
};

typedef struct {
	slice_t *names;
	int32_t ntopics;
	produce_part_t *parts;
	int32_t nparts;
	int16_t acks;
} produce_ctx_t;

static void produce_free(kreq_t *req)
{
	produce_ctx_t *c = req->ctx;
	free(c->names);
	free(c->parts);
	free(c);
}

static void produce_respond(kreq_t *req)
{
	produce_ctx_t *c = req->ctx;
	if (req->no_response) {
		kreq_finish(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	int v = req->api_version;
	kresp_begin(req);
	kw_i32(b, c->ntopics);
	int32_t k = 0;
	for (int32_t t = 0; t < c->ntopics; t++) {
		kw_string(b, c->names[t]);
		int32_t n = 0;
		for (int32_t i = k; i < c->nparts && c->parts[i].topic == t; i++)
			n++;
		kw_i32(b, n);
		for (int32_t i = 0; i < n; i++, k++) {
			produce_part_t *pp = &c->parts[k];
			if (pp->err == KERR_NONE && pp->wait_status != OK)
				pp->err = KERR_KAFKA_STORAGE_ERROR;
			kw_i32(b, pp->index);
			kw_i16(b, pp->err);
			kw_i64(b, pp->err ? -1 : pp->base_offset);
			kw_i64(b, pp->err ? -1 : pp->log_append_time);
			if (v >= 5)
				kw_i64(b, pp->err ? -1 : pp->log_start);
		}
	}
	kw_i32(b, 0); /* throttle_time_ms */
	stats_hist_observe(&storage_stats(kreq_storage(req))->kafka_produce[c->acks == -1],
			   clock_mono_ns(clock_system()) - req->start_ns);
	kreq_finish(req);
}

static void produce_task(loop_task_t *t)
{
	produce_part_t *pp = t->data;
	kreq_async_done(pp->req, produce_respond);
}

/* Flusher thread: hand the completion to the connection's loop. */
static void produce_durable(partition_waiter_t *w, err_t status)
{
	produce_part_t *pp = (produce_part_t *)w;
	pp->wait_status = status;
	loop_post(kreq_loop(pp->req), &pp->task);
}

/* Appends every batch of one partition's records; registers a durability wait when acks=all. */
static void produce_partition(kreq_t *req, produce_part_t *pp, partition_t *p, slice_t records, int16_t acks)
{
	uint8_t *data = req->frame + (records.ptr - req->frame); /* our own copy: patched in place */
	size_t pos = 0;
	int64_t last = -1;
	while (pos < records.len) {
		if (records.len - pos < RB_LOG_OVERHEAD) {
			pp->err = KERR_CORRUPT_MESSAGE;
			return;
		}
		int64_t blen = RB_LOG_OVERHEAD + (int64_t)(int32_t)be32_load(data + pos + 8);
		if (blen < RB_HEADER_LEN || (size_t)blen > records.len - pos) {
			pp->err = KERR_CORRUPT_MESSAGE;
			return;
		}
		partition_append_t res;
		err_t rc = partition_append(p, data + pos, (size_t)blen, NULL, &res);
		if (rc != OK) {
			pp->err = kerr_from(rc);
			if (rc != ERR_CRC && rc != ERR_MALFORMED && rc != ERR_TOO_LARGE && rc != ERR_TIMESTAMP &&
			    rc != ERR_SEQUENCE && rc != ERR_FENCED)
				log_warn("kafka: produce to %s failed: %s", partition_dir(p), err_str(rc));
			if (last < 0)
				return;
			break; /* earlier batches were appended: wait for them */
		}
		if (last < 0) {
			pp->base_offset = res.base_offset;
			pp->log_append_time = res.log_append_time;
		}
		pp->log_start = res.log_start;
		last = res.last_offset;
		pos += (size_t)blen;
	}
	if (last < 0) {
		pp->err = KERR_CORRUPT_MESSAGE; /* no batch at all */
		return;
	}
	if (acks != -1)
		return;
	pp->w.cb = produce_durable;
	int rc = partition_wait(p, last, &pp->w);
	if (rc == 0)
		req->pending++;
	else if (rc < 0)
		pp->err = kerr_from(rc);
}

void kapi_produce(kreq_t *req)
{
	reader_t *r = &req->r;
	kstr_t txn = kr_string(r);
	int16_t acks = reader_i16(r);
	reader_i32(r); /* timeout_ms: durability waits are bounded by the disk, not by this */
	int32_t ntopics = kr_array(r);
	if (r->err != OK || ntopics < 0) {
		kreq_malformed(req);
		return;
	}
	produce_ctx_t *c = calloc(1, sizeof *c);
	ASSERT(c != NULL);
	req->ctx = c;
	req->ctx_free = produce_free;
	c->names = calloc((size_t)ntopics + 1, sizeof *c->names);
	ASSERT(c->names != NULL);
	int32_t cap = 0;
	/* Decode everything first, so a malformed request changes nothing. */
	reader_t probe = *r;
	for (int32_t t = 0; t < ntopics && probe.err == OK; t++) {
		c->names[t] = kr_string(&probe).s;
		int32_t np = kr_array(&probe);
		for (int32_t i = 0; i < np && probe.err == OK; i++) {
			reader_i32(&probe);
			kr_bytes(&probe);
			cap++;
		}
		if (np < 0)
			reader_fail(&probe, ERR_MALFORMED);
	}
	if (probe.err != OK) {
		kreq_malformed(req);
		return;
	}
	c->ntopics = ntopics;
	c->parts = calloc((size_t)cap + 1, sizeof *c->parts);
	ASSERT(c->parts != NULL);
	req->no_response = acks == 0;
	c->acks = acks;
	for (int32_t t = 0; t < ntopics; t++) {
		kr_string(r);
		int32_t np = kr_array(r);
		int16_t terr = KERR_NONE;
		topic_t *topic = kafka_topic(req, c->names[t], false, &terr);
		for (int32_t i = 0; i < np; i++) {
			produce_part_t *pp = &c->parts[c->nparts++];
			pp->req = req;
			pp->topic = t;
			pp->index = reader_i32(r);
			kstr_t records = kr_bytes(r);
			pp->task.cb = produce_task;
			pp->task.data = pp;
			pp->base_offset = pp->log_append_time = pp->log_start = -1;
			partition_t *p = topic ? topic_partition(topic, pp->index, NULL) : NULL;
			if (!txn.null)
				pp->err = KERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
			else if (acks != 0 && acks != 1 && acks != -1)
				pp->err = KERR_INVALID_REQUIRED_ACKS;
			else if (topic == NULL)
				pp->err = terr;
			else if (p == NULL)
				pp->err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
			else if (records.null || records.s.len == 0)
				pp->err = KERR_CORRUPT_MESSAGE;
			else
				produce_partition(req, pp, p, records.s, acks);
		}
		topic_put(topic);
	}
	if (req->pending == 0)
		produce_respond(req);
}

/* ---------------------------------------------------------------- Fetch */

typedef struct {
	int32_t topic;
	int32_t index;
	int64_t offset;
	int32_t max_bytes;
} fetch_part_t;

typedef struct {
	int32_t max_wait_ms, min_bytes, max_bytes;
	int8_t isolation;
	slice_t *names;
	topic_t **topics;
	int16_t *topic_err;
	int32_t ntopics;
	fetch_part_t *parts;
	int32_t nparts;
} fetch_ctx_t;

static void fetch_free(kreq_t *req)
{
	fetch_ctx_t *c = req->ctx;
	for (int32_t t = 0; t < c->ntopics; t++)
		topic_put(c->topics[t]);
	free(c->topics);
	free(c->topic_err);
	free(c->names);
	free(c->parts);
	free(c);
}

#define FETCH_RANGES_MAX 8

typedef struct {
	int16_t err;
	partition_info_t info;
	log_range_t ranges[FETCH_RANGES_MAX];
	int nranges;
	int64_t bytes;
} fetch_result_t;

/* Reads one partition within a byte budget; at least one batch when `force` (KIP-74). */
static void fetch_read(fetch_ctx_t *c, const fetch_part_t *fp, int64_t budget, bool force, fetch_result_t *out)
{
	memset(out, 0, sizeof *out);
	topic_t *t = c->topics[fp->topic];
	if (t == NULL) {
		out->err = c->topic_err[fp->topic];
		return;
	}
	err_t oe;
	partition_t *p = topic_partition(t, fp->index, &oe);
	if (p == NULL) {
		out->err = oe == ERR_NOT_FOUND ? KERR_UNKNOWN_TOPIC_OR_PARTITION : KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	partition_info(p, &out->info);
	if (out->info.failed != OK) {
		out->err = KERR_KAFKA_STORAGE_ERROR;
		return;
	}
	/* Between the high watermark and the log end the data is not durable yet: empty, not an error
	 * (an error would make a consumer reset its position). */
	if (fp->offset < out->info.log_start || fp->offset > out->info.log_end) {
		out->err = KERR_OFFSET_OUT_OF_RANGE;
		return;
	}
	int64_t off = fp->offset, limit = fp->max_bytes < budget ? fp->max_bytes : budget;
	while (off < out->info.hwm && out->nranges < FETCH_RANGES_MAX) {
		log_range_t r;
		/* never waits for the archive: a segment being downloaded is "no data yet", and the download's
		 * end wakes the parked fetch (archiver.c) */
		err_t rc = partition_read_nowait(p, off, limit - out->bytes > 0 ? limit - out->bytes : 1, &r);
		if (rc != OK) {
			if (out->nranges == 0 && rc != ERR_AGAIN)
				out->err = kerr_from(rc);
			return;
		}
		if (r.len == 0 || (out->bytes + r.len > limit && !(force && out->bytes == 0))) {
			log_range_release(&r);
			return;
		}
		out->ranges[out->nranges++] = r;
		out->bytes += r.len;
		off = r.next_offset;
		if (out->bytes >= limit)
			return;
	}
}

static void fetch_release(fetch_result_t *res)
{
	for (int i = 0; i < res->nranges; i++)
		log_range_release(&res->ranges[i]);
	res->nranges = 0;
}

static void fetch_respond(kreq_t *req)
{
	fetch_ctx_t *c = req->ctx;
	atomic_fetch_add_explicit(&storage_stats(kreq_storage(req))->fetches, 1, memory_order_relaxed);
	buf_t *b = &req->resp.mem;
	int v = req->api_version;
	kresp_begin(req);
	kw_i32(b, 0); /* throttle_time_ms */
	if (v >= 7) {
		kw_i16(b, KERR_NONE);
		kw_i32(b, 0); /* session_id: sessions are not used */
	}
	kw_i32(b, c->ntopics);
	int64_t budget = c->max_bytes > 0 ? c->max_bytes : INT32_MAX, used = 0;
	int32_t k = 0;
	for (int32_t t = 0; t < c->ntopics; t++) {
		kw_string(b, c->names[t]);
		int32_t n = 0;
		for (int32_t i = k; i < c->nparts && c->parts[i].topic == t; i++)
			n++;
		kw_i32(b, n);
		for (int32_t i = 0; i < n; i++, k++) {
			fetch_result_t res;
			fetch_read(c, &c->parts[k], budget - used, used == 0, &res);
			used += res.bytes;
			kw_i32(b, c->parts[k].index);
			kw_i16(b, res.err);
			kw_i64(b, res.err ? -1 : res.info.hwm);
			kw_i64(b, res.err ? -1 : res.info.hwm); /* last_stable_offset: no transactions */
			if (v >= 5)
				kw_i64(b, res.err ? -1 : res.info.log_start);
			kw_i32(b, 0); /* aborted_transactions: empty, never null (kafka-python) */
			if (v >= 11)
				kw_i32(b, -1); /* preferred_read_replica */
			kw_i32(b, (int32_t)res.bytes); /* records: never null */
			atomic_fetch_add_explicit(&storage_stats(kreq_storage(req))->fetch_bytes, (uint64_t)res.bytes,
						  memory_order_relaxed);
			for (int j = 0; j < res.nranges; j++)
				kresp_add_range(req, &res.ranges[j]);
		}
	}
	kreq_finish(req);
}

void kapi_fetch_retry(kreq_t *req, bool final)
{
	fetch_ctx_t *c = req->ctx;
	if (!final) {
		int64_t avail = 0;
		bool errors = false;
		for (int32_t i = 0; i < c->nparts && avail < c->min_bytes && !errors; i++) {
			fetch_result_t res;
			fetch_read(c, &c->parts[i], c->min_bytes, true, &res);
			errors = res.err != KERR_NONE;
			avail += res.bytes;
			fetch_release(&res);
		}
		if (avail < c->min_bytes && !errors && c->max_wait_ms > 0) {
			if (!req->parked)
				kreq_park(req, c->max_wait_ms, kapi_fetch_retry);
			return;
		}
	}
	kreq_unpark(req);
	fetch_respond(req);
}

void kapi_fetch(kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	fetch_ctx_t *c = calloc(1, sizeof *c);
	ASSERT(c != NULL);
	req->ctx = c;
	req->ctx_free = fetch_free;
	reader_i32(r); /* replica_id */
	c->max_wait_ms = reader_i32(r);
	c->min_bytes = reader_i32(r);
	c->max_bytes = reader_i32(r);
	c->isolation = (int8_t)reader_u8(r);
	if (v >= 7) {
		reader_i32(r); /* session_id */
		reader_i32(r); /* session_epoch */
	}
	int32_t ntopics = kr_array(r);
	if (r->err != OK || ntopics < 0) {
		kreq_malformed(req);
		return;
	}
	c->names = calloc((size_t)ntopics + 1, sizeof *c->names);
	c->topics = calloc((size_t)ntopics + 1, sizeof *c->topics);
	c->topic_err = calloc((size_t)ntopics + 1, sizeof *c->topic_err);
	int32_t cap = 16;
	c->parts = malloc((size_t)cap * sizeof *c->parts);
	ASSERT(c->names && c->topics && c->topic_err && c->parts);
	for (int32_t t = 0; t < ntopics && r->err == OK; t++) {
		c->names[t] = kr_string(r).s;
		c->ntopics++;
		int32_t np = kr_array(r);
		for (int32_t i = 0; i < np && r->err == OK; i++) {
			if (c->nparts == cap) {
				cap *= 2;
				c->parts = realloc(c->parts, (size_t)cap * sizeof *c->parts);
				ASSERT(c->parts != NULL);
			}
			fetch_part_t *fp = &c->parts[c->nparts++];
			fp->topic = t;
			fp->index = reader_i32(r);
			if (v >= 9)
				reader_i32(r); /* current_leader_epoch */
			fp->offset = reader_i64(r);
			if (v >= 5)
				reader_i64(r); /* log_start_offset (followers only) */
			fp->max_bytes = reader_i32(r);
			if (fp->max_bytes < 0)
				reader_fail(r, ERR_MALFORMED);
		}
	}
	/* forgotten_topics_data (v7+) and rack_id (v11+) carry nothing for a session-less broker. */
	if (r->err != OK) {
		kreq_malformed(req);
		return;
	}
	for (int32_t t = 0; t < c->ntopics; t++)
		c->topics[t] = kafka_topic(req, c->names[t], false, &c->topic_err[t]);
	if (c->max_wait_ms < 0)
		c->max_wait_ms = 0;
	if (c->max_wait_ms > 300000)
		c->max_wait_ms = 300000;
	kapi_fetch_retry(req, false);
}

/* ---------------------------------------------------------------- ListOffsets */

/* How long a ListOffsets by timestamp waits for archived segments to download before the partitions still
 * waiting answer REQUEST_TIMED_OUT (retriable): clients give up at about 30 s themselves. */
#define LIST_OFFSETS_WAIT_MS 25000

typedef struct {
	reader_t body; /* the request's topics, read again by each try */
} list_offsets_ctx_t;

static void list_offsets_free(kreq_t *req)
{
	free(req->ctx);
	req->ctx = NULL;
}

/* Writes the whole answer; a partition by timestamp whose archived segment is not local yet has its download
 * started, and then (unless final) the request parks and writes it again once the data hook fires. */
static void list_offsets_try(kreq_t *req, bool final)
{
	list_offsets_ctx_t *c = req->ctx;
	reader_t rd = c->body, *r = &rd;
	int v = req->api_version;
	bool waiting = false;
	int32_t ntopics = kr_array(r);
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (v >= 2)
		kw_i32(b, 0);
	kw_i32(b, ntopics);
	for (int32_t t = 0; t < ntopics; t++) {
		slice_t name = kr_string(r).s;
		int32_t np = kr_array(r);
		int16_t terr;
		topic_t *topic = kafka_topic(req, name, false, &terr);
		kw_string(b, name);
		kw_i32(b, np);
		for (int32_t i = 0; i < np; i++) {
			int32_t idx = reader_i32(r);
			int64_t ts = reader_i64(r), off = -1, found_ts = -1;
			int16_t err = terr;
			partition_t *p = topic ? topic_partition(topic, idx, NULL) : NULL;
			if (topic != NULL && p == NULL)
				err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
			if (p != NULL) {
				partition_info_t info;
				partition_info(p, &info);
				if (info.failed != OK)
					err = KERR_KAFKA_STORAGE_ERROR;
				else if (ts == -1)
					off = info.hwm;
				else if (ts == -2)
					off = info.log_start;
				else {
					/* never waits for the archive on the loop (as a fetch) */
					err_t rc = partition_offset_for_time_nowait(p, ts, &off, &found_ts);
					if (rc == ERR_AGAIN) {
						waiting = true;
						err = KERR_REQUEST_TIMED_OUT; /* the answer if this try is the last */
					} else if (rc != OK) {
						err = kerr_from(rc);
					}
				}
			}
			kw_i32(b, idx);
			kw_i16(b, err);
			kw_i64(b, err ? -1 : found_ts);
			kw_i64(b, err ? -1 : off);
		}
		topic_put(topic);
	}
	if (waiting && !final) {
		if (!req->parked)
			kreq_park(req, LIST_OFFSETS_WAIT_MS, list_offsets_try);
		return;
	}
	kreq_unpark(req);
	kreq_finish(req);
}

void kapi_list_offsets(kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	reader_i32(r); /* replica_id */
	if (v >= 2)
		reader_u8(r); /* isolation_level: no transactions, so LSO = HWM */
	reader_t probe = *r;
	int32_t ntopics = kr_array(&probe);
	for (int32_t t = 0; t < ntopics && probe.err == OK; t++) {
		kr_string(&probe);
		int32_t np = kr_array(&probe);
		for (int32_t i = 0; i < np && probe.err == OK; i++) {
			reader_i32(&probe);
			reader_i64(&probe);
		}
		if (np < 0)
			reader_fail(&probe, ERR_MALFORMED);
	}
	if (r->err != OK || probe.err != OK || ntopics < 0) {
		kreq_malformed(req);
		return;
	}
	list_offsets_ctx_t *c = calloc(1, sizeof *c);
	ASSERT(c != NULL);
	c->body = *r;
	req->ctx = c;
	req->ctx_free = list_offsets_free;
	list_offsets_try(req, false);
}
