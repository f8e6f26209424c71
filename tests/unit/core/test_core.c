/* test_core.c -- CRC-32C (vectors, hardware against table), buffers and the varint reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/crc32c.h"

static void test_crc32c_vectors(void **state)
{
	(void)state;
	/* RFC 3720 (iSCSI) B.4 and the standard check value. */
	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
	uint8_t zeros[32] = { 0 }, ones[32], inc[32], dec[32];
	memset(ones, 0xff, sizeof ones);
	for (int i = 0; i < 32; i++) {
		inc[i] = (uint8_t)i;
		dec[i] = (uint8_t)(31 - i);
	}
	assert_int_equal(crc32c_sw(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(crc32c_sw(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(crc32c_sw(0, inc, 32), 0x46DD794Eu);
	assert_int_equal(crc32c_sw(0, dec, 32), 0x113FDB5Cu);
	assert_int_equal(crc32c(0, "", 0), 0);
}

static void test_crc32c_hw_matches_table(void **state)
{
	(void)state;
	if (!crc32c_hw_available()) {
		skip(); /* no hardware path on this CPU: the table is the only implementation */
	}
	uint64_t x = 12345;
	static uint8_t buf[40099]; /* past three 4 KiB strides, the hardware path's three-stream rounds */
	for (size_t i = 0; i < sizeof buf; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		buf[i] = (uint8_t)(x >> 56);
	}
	for (size_t len = 0; len < sizeof buf; len += 1 + len / 3)
		for (size_t off = 0; off < 9; off++)
			if (off + len <= sizeof buf)
				assert_int_equal(crc32c_hw(0, buf + off, len), crc32c_sw(0, buf + off, len));
	for (size_t len = 3 * 4096 - 9; len < 3 * 4096 + 9; len++) /* around one round, and a running crc in */
		assert_int_equal(crc32c_hw(0x1234567u, buf + 1, len), crc32c_sw(0x1234567u, buf + 1, len));
	assert_int_equal(crc32c_hw(0, buf, sizeof buf), crc32c_sw(0, buf, sizeof buf));
	/* Chaining: crc(a||b) = crc(crc(a), b). */
	assert_int_equal(crc32c(crc32c(0, buf, 1000), buf + 1000, 3099), crc32c(0, buf, 4099));
	assert_int_equal(crc32c(crc32c(0, buf, 13000), buf + 13000, 27099), crc32c(0, buf, 40099));
	assert_int_equal(crc32c_sw(crc32c_sw(0, buf, 7), buf + 7, 4092), crc32c_sw(0, buf, 4099));
}

static void test_varint_roundtrip(void **state)
{
	(void)state;
	static const int64_t vals[] = { 0, 1, -1, 63, -64, 64, 300, -300, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN };
	buf_t b = { 0 };
	for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
		buf_put_varint(&b, vals[i]);
	reader_t r = reader_make(b.data, b.len);
	for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
		assert_int_equal(reader_varlong(&r), vals[i]);
	assert_int_equal(r.err, OK);
	assert_int_equal(reader_left(&r), 0);
	/* -1 is one byte 0x01; 300 zig-zags to 600 = 0xd8 0x04 */
	b.len = 0;
	buf_put_varint(&b, -1);
	buf_put_varint(&b, 300);
	assert_int_equal(b.len, 3);
	assert_int_equal(b.data[0], 0x01);
	assert_int_equal(b.data[1], 0xd8);
	assert_int_equal(b.data[2], 0x04);
	buf_free(&b);
}

static void test_reader_errors_are_sticky(void **state)
{
	(void)state;
	const uint8_t short_buf[3] = { 1, 2, 3 };
	reader_t r = reader_make(short_buf, sizeof short_buf);
	assert_int_equal(reader_i16(&r), 0x0102);
	assert_int_equal(reader_i32(&r), 0); /* only one byte left */
	assert_int_equal(r.err, ERR_INCOMPLETE);
	assert_int_equal(reader_u8(&r), 0); /* later reads return zero */
	assert_int_equal(r.err, ERR_INCOMPLETE);

	const uint8_t endless[12] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	r = reader_make(endless, sizeof endless);
	reader_uvarint(&r);
	assert_int_equal(r.err, ERR_MALFORMED);

	buf_t b = { 0 };
	buf_put_varint(&b, (int64_t)INT32_MAX + 1);
	r = reader_make(b.data, b.len);
	reader_varint(&r); /* does not fit an int32 */
	assert_int_equal(r.err, ERR_MALFORMED);
	buf_free(&b);
}

static void test_buf_grows(void **state)
{
	(void)state;
	buf_t b = { 0 };
	for (uint32_t i = 0; i < 10000; i++)
		buf_put_be32(&b, i);
	assert_int_equal(b.len, 40000);
	assert_true(b.cap >= b.len);
	assert_int_equal(be32_load(b.data + 4 * 9999), 9999);
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors),       cmocka_unit_test(test_crc32c_hw_matches_table),
		cmocka_unit_test(test_varint_roundtrip),     cmocka_unit_test(test_reader_errors_are_sticky),
		cmocka_unit_test(test_buf_grows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
