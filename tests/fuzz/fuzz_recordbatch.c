/* fuzz_recordbatch.c -- libFuzzer target: RecordBatch v2 validation and the record walk never crash,
 * never read out of bounds, and agree with each other on what a valid batch is. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fl_assert.h"
#include "storage/recordbatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rb_header_t h;
	if (rb_header_decode(data, size, &h) == OK)
		(void)rb_total_len(&h);
	if (rb_check_stored(data, size, &h) != OK)
		return 0;
	err_t rc = rb_validate(data, size, &h);
	if (rc == OK && rb_codec(&h) == RB_CODEC_NONE) {
		/* A valid uncompressed batch walks cleanly, record by record, to its exact end. */
		reader_t r = reader_make(data + RB_HEADER_LEN, size - RB_HEADER_LEN);
		for (int32_t i = 0; i < h.records_count; i++) {
			rb_record_t rec;
			rb_record_next(&r, &rec);
			ASSERT(r.err == OK);
			ASSERT(rec.offset_delta == i);
			reader_t hr = reader_make(rec.headers.ptr, rec.headers.len);
			for (int32_t k = 0; k < rec.headers_count; k++) {
				slice_t key, value;
				bool vn;
				rb_record_header_next(&hr, &key, &value, &vn);
				ASSERT(hr.err == OK);
			}
		}
		ASSERT(reader_left(&r) == 0);
		/* Patching what the broker owns keeps it valid. */
		uint8_t *copy = malloc(size);
		memcpy(copy, data, size);
		rb_set_base_offset(copy, 1234);
		rb_set_log_append_time(copy, size, 42);
		ASSERT(rb_check_stored(copy, size, &h) == OK);
		free(copy);
	}
	return 0;
}
