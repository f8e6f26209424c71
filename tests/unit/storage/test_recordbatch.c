/* test_recordbatch.c -- RecordBatch v2: layout, validation, patching, records. */
#include "testutil.h"

#include "core/crc32c.h"

static void test_builder_layout(void **state)
{
	(void)state;
	rb_builder_t b;
	rb_builder_init(&b, 42, 3, 7);
	rb_kv_t h = { slice_cstr("trace"), slice_cstr("abc"), false };
	rb_builder_add(&b, 1000, slice_cstr("key"), slice_cstr("value"), &h, 1);
	rb_builder_add(&b, 1005, slice_make(NULL, 0), slice_make(NULL, 0), NULL, 0);
	slice_t s = rb_builder_finish(&b);
	const uint8_t *p = s.ptr;
	assert_int_equal(be64_load(p), 0);                         /* baseOffset */
	assert_int_equal(be32_load(p + 8), s.len - 12);             /* batchLength */
	assert_int_equal(p[16], 2);                                 /* magic */
	assert_int_equal(be32_load(p + 17), crc32c(0, p + 21, s.len - 21));
	assert_int_equal(be32_load(p + 23), 1);                     /* lastOffsetDelta */
	assert_int_equal(be64_load(p + 27), 1000);                  /* baseTimestamp */
	assert_int_equal(be64_load(p + 35), 1005);                  /* maxTimestamp */
	assert_int_equal(be64_load(p + 43), 42);                    /* producerId */
	assert_int_equal(be16_load(p + 51), 3);                     /* producerEpoch */
	assert_int_equal(be32_load(p + 53), 7);                     /* baseSequence */
	assert_int_equal(be32_load(p + 57), 2);                     /* recordsCount */
	rb_header_t hd;
	assert_int_equal(rb_validate(p, s.len, &hd), OK);
	reader_t r = reader_make(p + RB_HEADER_LEN, s.len - RB_HEADER_LEN);
	rb_record_t rec;
	rb_record_next(&r, &rec);
	assert_int_equal(r.err, OK);
	assert_int_equal(rec.offset_delta, 0);
	assert_int_equal(rec.timestamp_delta, 0);
	assert_memory_equal(rec.key.ptr, "key", 3);
	assert_memory_equal(rec.value.ptr, "value", 5);
	assert_int_equal(rec.headers_count, 1);
	reader_t hr = reader_make(rec.headers.ptr, rec.headers.len);
	slice_t hk, hv;
	bool hn;
	rb_record_header_next(&hr, &hk, &hv, &hn);
	assert_true(slice_eq(hk, slice_cstr("trace")));
	assert_true(slice_eq(hv, slice_cstr("abc")));
	rb_record_next(&r, &rec);
	assert_int_equal(r.err, OK);
	assert_true(rec.key_null);
	assert_true(rec.value_null);
	assert_int_equal(rec.timestamp_delta, 5);
	assert_int_equal(reader_left(&r), 0);
	rb_builder_free(&b);
}

static void test_validate_rejects(void **state)
{
	(void)state;
	buf_t b = { 0 };
	rb_header_t h;
	tu_batch(&b, 0, 5, 30, 1000);
	assert_int_equal(rb_validate(b.data, b.len, &h), OK);
	/* length must match the bytes given */
	assert_int_equal(rb_validate(b.data, b.len - 1, &h), ERR_MALFORMED);
	assert_int_equal(rb_validate(b.data, 20, &h), ERR_INCOMPLETE);
	/* any flipped bit inside the CRC's range is caught */
	for (size_t i = 21; i < b.len; i += 7) {
		b.data[i] ^= 0x10;
		assert_int_equal(rb_validate(b.data, b.len, &h), ERR_CRC);
		b.data[i] ^= 0x10;
	}
	/* the fields outside the CRC can be patched freely */
	rb_set_base_offset(b.data, 123456);
	rb_set_leader_epoch(b.data, 9);
	assert_int_equal(rb_validate(b.data, b.len, &h), OK);
	assert_int_equal(h.base_offset, 123456);
	/* wrong magic */
	b.data[16] = 1;
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_MALFORMED);
	b.data[16] = 2;
	/* recordsCount != lastOffsetDelta + 1, with a correct CRC */
	be32_store(b.data + 57, 4);
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_MALFORMED);
	be32_store(b.data + 57, 5);
	/* a client may not set LogAppendTime or the control bit */
	be16_store(b.data + 21, RB_ATTR_LOG_APPEND_TIME);
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_TIMESTAMP);
	be16_store(b.data + 21, RB_ATTR_CONTROL);
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_MALFORMED);
	be16_store(b.data + 21, 7); /* codec 7 does not exist */
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_MALFORMED);
	buf_free(&b);
}

static void test_validate_records_walk(void **state)
{
	(void)state;
	buf_t b = { 0 };
	rb_header_t h;
	tu_batch(&b, 0, 3, 30, 1000);
	/* Claim 4 records while 3 are present (fix the CRC): the record walk catches it. */
	be32_store(b.data + 23, 3);
	be32_store(b.data + 57, 4);
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_MALFORMED);
	/* An absurd count is refused before walking. */
	be32_store(b.data + 23, 0x7ffffffe);
	be32_store(b.data + 57, 0x7fffffff);
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(rb_validate(b.data, b.len, &h), ERR_MALFORMED);
	buf_free(&b);
}

static void test_log_append_time_patch(void **state)
{
	(void)state;
	buf_t b = { 0 };
	rb_header_t h;
	tu_batch(&b, 0, 2, 30, 1000);
	rb_set_log_append_time(b.data, b.len, 99999);
	assert_int_equal(rb_check_stored(b.data, b.len, &h), OK); /* CRC recomputed */
	assert_int_equal(h.max_timestamp, 99999);
	assert_true(h.attributes & RB_ATTR_LOG_APPEND_TIME);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builder_layout),
		cmocka_unit_test(test_validate_rejects),
		cmocka_unit_test(test_validate_records_walk),
		cmocka_unit_test(test_log_append_time_patch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
