/* recordbatch.c -- RecordBatch v2 decoding, validation, patching and building. See recordbatch.h. */
#include "storage/recordbatch.h"

#include "core/compat.h"
#include "core/crc32c.h"
#include "core/fl_assert.h"

#define CRC_START 21

err_t rb_header_decode(const uint8_t *p, size_t len, rb_header_t *h)
{
	if (len < RB_HEADER_LEN)
		return ERR_INCOMPLETE;
	reader_t r = reader_make(p, RB_HEADER_LEN);
	h->base_offset = reader_i64(&r);
	h->batch_length = reader_i32(&r);
	h->partition_leader_epoch = reader_i32(&r);
	h->magic = (int8_t)reader_u8(&r);
	h->crc = (uint32_t)reader_i32(&r);
	h->attributes = reader_i16(&r);
	h->last_offset_delta = reader_i32(&r);
	h->base_timestamp = reader_i64(&r);
	h->max_timestamp = reader_i64(&r);
	h->producer_id = reader_i64(&r);
	h->producer_epoch = reader_i16(&r);
	h->base_sequence = reader_i32(&r);
	h->records_count = reader_i32(&r);
	DASSERT(r.err == OK);
	if (h->magic != RB_MAGIC || h->batch_length < RB_MIN_BATCH_LENGTH)
		return ERR_MALFORMED;
	return OK;
}

uint32_t rb_compute_crc(const uint8_t *p, size_t len)
{
	ASSERT(len >= RB_HEADER_LEN);
	return crc32c(0, p + CRC_START, len - CRC_START);
}

err_t rb_check_stored(const uint8_t *p, size_t len, rb_header_t *h)
{
	err_t rc = rb_header_decode(p, len, h);
	if (rc != OK)
		return rc;
	if ((uint64_t)rb_total_len(h) != len)
		return ERR_MALFORMED;
	if (h->last_offset_delta < 0)
		return ERR_MALFORMED;
	if (rb_compute_crc(p, len) != h->crc)
		return ERR_CRC;
	return OK;
}

void rb_record_header_next(reader_t *r, slice_t *key, slice_t *value, bool *value_null)
{
	int32_t klen = reader_varint(r);
	if (klen < 0) {
		reader_fail(r, ERR_MALFORMED); /* header keys are never null */
		return;
	}
	*key = reader_slice(r, (size_t)klen);
	int32_t vlen = reader_varint(r);
	if (vlen < -1) {
		reader_fail(r, ERR_MALFORMED);
		return;
	}
	*value = vlen > 0 ? reader_slice(r, (size_t)vlen) : slice_make(NULL, 0);
	*value_null = vlen < 0;
}

void rb_record_next(reader_t *r, rb_record_t *rec)
{
	memset(rec, 0, sizeof *rec);
	rec->length = reader_varint(r);
	if (r->err != OK)
		return;
	if (rec->length < 0 || (size_t)rec->length > reader_left(r)) {
		reader_fail(r, ERR_MALFORMED);
		return;
	}
	/* Parse inside the record's own bounds, then step the outer reader past it. */
	reader_t in = reader_make(r->pos, (size_t)rec->length);
	r->pos += rec->length;
	rec->attributes = (int8_t)reader_u8(&in);
	rec->timestamp_delta = reader_varlong(&in);
	rec->offset_delta = reader_varint(&in);
	int32_t klen = reader_varint(&in);
	rec->key_null = klen < 0;
	if (klen < -1)
		reader_fail(&in, ERR_MALFORMED);
	if (klen > 0)
		rec->key = reader_slice(&in, (size_t)klen);
	int32_t vlen = reader_varint(&in);
	rec->value_null = vlen < 0;
	if (vlen < -1)
		reader_fail(&in, ERR_MALFORMED);
	if (vlen > 0)
		rec->value = reader_slice(&in, (size_t)vlen);
	rec->headers_count = reader_varint(&in);
	if (rec->headers_count < 0)
		reader_fail(&in, ERR_MALFORMED);
	const uint8_t *hstart = in.pos;
	for (int32_t i = 0; i < rec->headers_count && in.err == OK; i++) {
		slice_t k, v;
		bool vn;
		rb_record_header_next(&in, &k, &v, &vn);
	}
	rec->headers = slice_make(hstart, (size_t)(in.pos - hstart));
	if (in.err == OK && reader_left(&in) != 0)
		reader_fail(&in, ERR_MALFORMED); /* trailing bytes inside the record */
	if (in.err != OK)
		reader_fail(r, in.err == ERR_INCOMPLETE ? ERR_MALFORMED : in.err);
}

static err_t validate_records(const uint8_t *p, size_t len, const rb_header_t *h)
{
	reader_t r = reader_make(p + RB_HEADER_LEN, len - RB_HEADER_LEN);
	for (int32_t i = 0; i < h->records_count; i++) {
		rb_record_t rec;
		rb_record_next(&r, &rec);
		if (r.err != OK)
			return ERR_MALFORMED;
		if (rec.offset_delta != i)
			return ERR_MALFORMED;
	}
	return reader_left(&r) == 0 ? OK : ERR_MALFORMED;
}

err_t rb_validate(const uint8_t *p, size_t len, rb_header_t *h)
{
	err_t rc = rb_check_stored(p, len, h);
	if (rc != OK)
		return rc;
	if (h->records_count <= 0 || h->records_count != h->last_offset_delta + 1)
		return ERR_MALFORMED;
	if (rb_codec(h) > RB_CODEC_ZSTD)
		return ERR_MALFORMED;
	if (h->attributes & RB_ATTR_CONTROL)
		return ERR_MALFORMED;
	if (h->attributes & RB_ATTR_LOG_APPEND_TIME)
		return ERR_TIMESTAMP;
	if (h->producer_id >= 0 && h->base_sequence < 0)
		return ERR_MALFORMED;
	if (rb_codec(h) == RB_CODEC_NONE) {
		/* Each record takes at least 7 bytes: bound the count before walking. */
		if ((uint64_t)h->records_count > (len - RB_HEADER_LEN) / 7)
			return ERR_MALFORMED;
		return validate_records(p, len, h);
	}
	return OK;
}

void rb_set_log_append_time(uint8_t *p, size_t len, int64_t ts)
{
	ASSERT(len >= RB_HEADER_LEN);
	uint16_t attrs = be16_load(p + 21);
	be16_store(p + 21, (uint16_t)(attrs | RB_ATTR_LOG_APPEND_TIME));
	be64_store(p + 35, (uint64_t)ts);
	be32_store(p + 17, rb_compute_crc(p, len));
}

void rb_builder_init(rb_builder_t *b, int64_t producer_id, int16_t producer_epoch, int32_t base_sequence)
{
	memset(b, 0, sizeof *b);
	buf_reserve(&b->buf, 256);
	uint8_t hdr[RB_HEADER_LEN] = { 0 };
	be32_store(hdr + 12, (uint32_t)-1); /* partitionLeaderEpoch: the broker sets it */
	hdr[16] = RB_MAGIC;
	be64_store(hdr + 43, (uint64_t)producer_id);
	be16_store(hdr + 51, (uint16_t)producer_epoch);
	be32_store(hdr + 53, (uint32_t)base_sequence);
	buf_append(&b->buf, hdr, sizeof hdr);
	b->base_timestamp = -1;
	b->max_timestamp = -1;
}

static void put_bytes_varint(buf_t *buf, slice_t s, bool is_null)
{
	if (is_null) {
		buf_put_varint(buf, -1);
		return;
	}
	buf_put_varint(buf, (int64_t)s.len);
	buf_append(buf, s.ptr, s.len);
}

void rb_builder_add(rb_builder_t *b, int64_t timestamp, slice_t key, slice_t value, const rb_kv_t *headers,
		    int nheaders)
{
	if (b->count == 0)
		b->base_timestamp = timestamp;
	if (timestamp > b->max_timestamp)
		b->max_timestamp = timestamp;
	buf_t rec = { 0 };
	buf_put_u8(&rec, 0);
	buf_put_varint(&rec, timestamp - b->base_timestamp);
	buf_put_varint(&rec, b->count);
	put_bytes_varint(&rec, key, key.ptr == NULL);
	put_bytes_varint(&rec, value, value.ptr == NULL);
	buf_put_varint(&rec, nheaders);
	for (int i = 0; i < nheaders; i++) {
		put_bytes_varint(&rec, headers[i].key, false);
		put_bytes_varint(&rec, headers[i].value, headers[i].value_null);
	}
	buf_put_varint(&b->buf, (int64_t)rec.len);
	buf_append(&b->buf, rec.data, rec.len);
	buf_free(&rec);
	b->count++;
}

slice_t rb_builder_finish(rb_builder_t *b)
{
	ASSERT(b->count > 0);
	uint8_t *p = b->buf.data;
	be32_store(p + 8, (uint32_t)(b->buf.len - RB_LOG_OVERHEAD));
	be16_store(p + 21, 0);
	be32_store(p + 23, (uint32_t)(b->count - 1));
	be64_store(p + 27, (uint64_t)b->base_timestamp);
	be64_store(p + 35, (uint64_t)b->max_timestamp);
	be32_store(p + 57, (uint32_t)b->count);
	be32_store(p + 17, rb_compute_crc(p, b->buf.len));
	return slice_make(b->buf.data, b->buf.len);
}

void rb_builder_free(rb_builder_t *b)
{
	buf_free(&b->buf);
	b->count = 0;
}
