/*
 * testutil.h -- helpers shared by the storage unit tests: batches with known contents, a partition on the
 * simulated disk, reading a partition back into (offset, value) pairs, and a seeded RNG.
 */
#ifndef FL_TESTUTIL_H
#define FL_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/io_sim.h"
#include "storage/partition.h"
#include "storage/recordbatch.h"

/* A fresh directory under /tmp for tests on the real file system: cmocka setup and teardown functions. */
static char tu_dir[64] __attribute__((unused));

static inline int tu_dir_setup(void **state)
{
	(void)state;
	snprintf(tu_dir, sizeof tu_dir, "/tmp/factlog-test-XXXXXX");
	assert_non_null(mkdtemp(tu_dir));
	return 0;
}

static inline int tu_dir_teardown(void **state)
{
	(void)state;
	io_remove_tree(io_posix(), tu_dir);
	return 0;
}

static inline uint64_t tu_rng(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The value of record number `id`: "v<id>-" padded with a pattern to `len` bytes (len >= 24). */
static inline void tu_value(uint64_t id, size_t len, char *out)
{
	int n = snprintf(out, len + 1, "v%" PRIu64 "-", id);
	for (size_t i = (size_t)n; i < len; i++)
		out[i] = (char)('a' + (id + i) % 26);
}

/* A batch of `count` records with ids first_id.., each value `vlen` bytes, timestamps ts, ts+1, ... */
static inline void tu_batch(buf_t *out, uint64_t first_id, int count, size_t vlen, int64_t ts)
{
	rb_builder_t b;
	rb_builder_init(&b, -1, -1, -1);
	char *v = malloc(vlen + 1);
	for (int i = 0; i < count; i++) {
		char key[32];
		snprintf(key, sizeof key, "k%" PRIu64, (first_id + (uint64_t)i) % 7);
		tu_value(first_id + (uint64_t)i, vlen, v);
		rb_kv_t h = { slice_cstr("h"), slice_make(key, strlen(key)), false };
		rb_builder_add(&b, ts + i, slice_cstr(key), slice_make(v, vlen), &h, 1);
	}
	free(v);
	slice_t s = rb_builder_finish(&b);
	out->len = 0;
	buf_append(out, s.ptr, s.len);
	rb_builder_free(&b);
}

typedef struct {
	int64_t offset;
	int64_t ts;
	char *value;
} tu_rec_t;

typedef struct {
	tu_rec_t *v;
	size_t n, cap;
} tu_recs_t;

static inline void tu_recs_free(tu_recs_t *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].value);
	free(r->v);
	memset(r, 0, sizeof *r);
}

/* Reads every record from `from` up to the high watermark; checks each batch's CRC and density. */
static inline err_t tu_read_all(partition_t *p, io_t *io, int64_t from, int64_t max_bytes, tu_recs_t *out)
{
	partition_info_t info;
	partition_info(p, &info);
	int64_t off = from;
	buf_t b = { 0 };
	err_t rc = OK;
	int64_t expect = -1;
	while (rc == OK && off < info.hwm) {
		log_range_t r;
		rc = partition_read(p, off, max_bytes, &r);
		if (rc != OK)
			break;
		if (r.len == 0) {
			rc = ERR_CORRUPT;
			log_range_release(&r);
			break;
		}
		b.len = 0;
		buf_reserve(&b, (size_t)r.len);
		rc = log_range_copy(&r, io, b.data);
		int64_t pos = 0;
		while (rc == OK && pos < r.len) {
			rb_header_t h;
			int64_t blen = RB_LOG_OVERHEAD + (int32_t)be32_load(b.data + pos + 8);
			rc = rb_check_stored(b.data + pos, (size_t)blen, &h);
			if (rc != OK)
				break;
			if (expect >= 0 && h.base_offset != expect)
				rc = ERR_CORRUPT;
			expect = rb_last_offset(&h) + 1;
			reader_t rd = reader_make(b.data + pos + RB_HEADER_LEN, (size_t)blen - RB_HEADER_LEN);
			for (int32_t i = 0; i < h.records_count && rc == OK; i++) {
				rb_record_t rec;
				rb_record_next(&rd, &rec);
				if (rd.err != OK) {
					rc = rd.err;
					break;
				}
				int64_t o = h.base_offset + rec.offset_delta;
				if (o < from)
					continue;
				if (out->n == out->cap) {
					out->cap = out->cap ? out->cap * 2 : 256;
					out->v = realloc(out->v, out->cap * sizeof *out->v);
				}
				tu_rec_t *t = &out->v[out->n++];
				t->offset = o;
				t->ts = (h.attributes & RB_ATTR_LOG_APPEND_TIME) ? h.max_timestamp
										: h.base_timestamp + rec.timestamp_delta;
				t->value = strndup((const char *)rec.value.ptr, rec.value.len);
			}
			pos += blen;
		}
		off = r.next_offset;
		log_range_release(&r);
	}
	buf_free(&b);
	return rc;
}

static inline void tu_config(partition_config_t *cfg)
{
	partition_config_default(cfg);
	cfg->segment_bytes = 64 * 1024;
	cfg->index_interval_bytes = 1024;
	cfg->preallocate_bytes = 16 * 1024;
	cfg->checkpoint_interval_ms = 0;
}

/* Appends a batch and flushes so it is durable; returns its base offset. */
static inline int64_t tu_append_flush(partition_t *p, uint64_t id, int count, size_t vlen, int64_t ts)
{
	buf_t b = { 0 };
	tu_batch(&b, id, count, vlen, ts);
	partition_append_t res;
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), OK);
	assert_int_equal(partition_flush(p), OK);
	buf_free(&b);
	return res.base_offset;
}

#endif
