/* test_codec.c -- decompression of every Kafka codec (snappy raw and xerial), corrupt input, bombs, and
 * validation of compressed batches. Inputs are compressed here with the same libraries. */
#include "testutil.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "storage/codec.h"

static void records_blob(buf_t *out, int count)
{
	/* The records of an uncompressed batch, without its header. */
	buf_t b = { 0 };
	tu_batch(&b, 0, count, 100, 1000);
	buf_append(out, b.data + RB_HEADER_LEN, b.len - RB_HEADER_LEN);
	buf_free(&b);
}

static void compress_with(int codec, const buf_t *in, buf_t *out, bool xerial)
{
	out->len = 0;
	if (codec == RB_CODEC_GZIP) {
		z_stream z;
		memset(&z, 0, sizeof z);
		assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
		buf_reserve(out, deflateBound(&z, in->len) + 64);
		z.next_in = in->data;
		z.avail_in = (uInt)in->len;
		z.next_out = out->data;
		z.avail_out = (uInt)out->cap;
		assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
		out->len = z.total_out;
		deflateEnd(&z);
	} else if (codec == RB_CODEC_SNAPPY) {
		size_t n = snappy_max_compressed_length(in->len);
		buf_reserve(out, n + 32);
		if (xerial) {
			static const uint8_t hdr[16] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1 };
			buf_append(out, hdr, 16);
			buf_reserve(out, n + 8);
			assert_int_equal(snappy_compress((const char *)in->data, in->len, (char *)out->data + 20, &n),
					 SNAPPY_OK);
			be32_store(out->data + 16, (uint32_t)n);
			out->len = 20 + n;
		} else {
			assert_int_equal(snappy_compress((const char *)in->data, in->len, (char *)out->data, &n), SNAPPY_OK);
			out->len = n;
		}
	} else if (codec == RB_CODEC_LZ4) {
		size_t n = LZ4F_compressFrameBound(in->len, NULL);
		buf_reserve(out, n);
		n = LZ4F_compressFrame(out->data, n, in->data, in->len, NULL);
		assert_false(LZ4F_isError(n));
		out->len = n;
	} else {
		size_t n = ZSTD_compressBound(in->len);
		buf_reserve(out, n);
		n = ZSTD_compress(out->data, n, in->data, in->len, 3);
		assert_false(ZSTD_isError(n));
		out->len = n;
	}
}

/* A batch of `count` records compressed with codec. */
static void compressed_batch(int codec, int count, bool xerial, buf_t *batch)
{
	buf_t recs = { 0 }, z = { 0 };
	records_blob(&recs, count);
	compress_with(codec, &recs, &z, xerial);
	buf_t plain = { 0 };
	tu_batch(&plain, 0, count, 100, 1000);
	batch->len = 0;
	buf_append(batch, plain.data, RB_HEADER_LEN);
	buf_append(batch, z.data, z.len);
	be32_store(batch->data + 8, (uint32_t)(batch->len - RB_LOG_OVERHEAD));
	be16_store(batch->data + 21, (uint16_t)codec);
	be32_store(batch->data + 17, rb_compute_crc(batch->data, batch->len));
	buf_free(&recs);
	buf_free(&z);
	buf_free(&plain);
}

static void test_roundtrip_every_codec(void **state)
{
	(void)state;
	buf_t recs = { 0 }, z = { 0 }, out = { 0 };
	records_blob(&recs, 50);
	for (int codec = RB_CODEC_GZIP; codec <= RB_CODEC_ZSTD; codec++) {
		for (int x = 0; x < (codec == RB_CODEC_SNAPPY ? 2 : 1); x++) {
			compress_with(codec, &recs, &z, x);
			out.len = 0;
			assert_int_equal(codec_decompress(codec, slice_make(z.data, z.len), &out, CODEC_MAX_OUT), OK);
			assert_int_equal(out.len, recs.len);
			assert_memory_equal(out.data, recs.data, recs.len);
			/* Truncated input is an error, never a crash or a silent short result. */
			out.len = 0;
			assert_int_not_equal(codec_decompress(codec, slice_make(z.data, z.len / 2), &out, CODEC_MAX_OUT), OK);
			/* A small output limit stops a bomb. */
			out.len = 0;
			assert_int_equal(codec_decompress(codec, slice_make(z.data, z.len), &out, 100), ERR_LIMIT);
		}
	}
	buf_free(&recs);
	buf_free(&z);
	buf_free(&out);
}

static void test_validate_compressed_batches(void **state)
{
	(void)state;
	buf_t b = { 0 };
	for (int codec = RB_CODEC_GZIP; codec <= RB_CODEC_ZSTD; codec++) {
		compressed_batch(codec, 20, codec == RB_CODEC_SNAPPY, &b);
		rb_header_t h;
		assert_int_equal(rb_validate(b.data, b.len, &h), OK);
		assert_int_equal(codec_validate_batch(b.data, b.len), OK);
		/* recordsCount disagreeing with the compressed records is caught (CRC fixed up). */
		be32_store(b.data + 57, 21);
		be32_store(b.data + 23, 20);
		be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
		assert_int_equal(codec_validate_batch(b.data, b.len), ERR_MALFORMED);
		/* Garbage instead of a compressed blob. */
		compressed_batch(codec, 20, false, &b);
		memset(b.data + RB_HEADER_LEN, 0x5a, b.len - RB_HEADER_LEN);
		be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
		assert_int_not_equal(codec_validate_batch(b.data, b.len), OK);
	}
	buf_free(&b);
}

static void test_partition_stores_compressed_as_sent(void **state)
{
	(void)state;
	io_sim_t *sim = io_sim_new();
	io_t *io = io_sim_io(sim);
	int64_t now = 1000;
	clock_src_t clk;
	clock_manual_init(&clk, &now);
	partition_env_t env = { io, &clk, NULL, NULL, NULL, NULL, NULL };
	partition_config_t cfg;
	tu_config(&cfg);
	io->mkdir(io, "/p");
	partition_t *p;
	assert_int_equal(partition_open(&env, "/p/0", &cfg, &p), OK);
	buf_t b = { 0 }, sent = { 0 };
	compressed_batch(RB_CODEC_ZSTD, 10, false, &b);
	buf_append(&sent, b.data, b.len);
	partition_append_t res;
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), OK);
	assert_int_equal(partition_flush(p), OK);
	log_range_t r;
	assert_int_equal(partition_read(p, 0, 1 << 20, &r), OK);
	assert_int_equal(r.len, sent.len);
	uint8_t *back = malloc((size_t)r.len);
	assert_int_equal(log_range_copy(&r, io, back), OK);
	/* Byte for byte as sent, but for what the broker owns: base offset and leader epoch (0..16). */
	assert_memory_equal(back + 8, sent.data + 8, 4);
	assert_memory_equal(back + 16, sent.data + 16, sent.len - 16);
	free(back);
	log_range_release(&r);
	/* A corrupt compressed batch is refused and nothing is written. */
	memset(b.data + RB_HEADER_LEN + 4, 0, 8);
	be32_store(b.data + 17, rb_compute_crc(b.data, b.len));
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), ERR_MALFORMED);
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.log_end, 10);
	partition_close(p);
	buf_free(&b);
	buf_free(&sent);
	io_sim_free(sim);
}

typedef struct {
	int64_t offsets[200];
	int n, stop_at;
} walk_t;

static int collect(void *arg, const rb_header_t *h, const rb_record_t *rec, int64_t offset, int64_t ts)
{
	(void)h;
	walk_t *w = arg;
	char want[101];
	tu_value((uint64_t)(offset % 20), 100, want);
	assert_int_equal(rec->value.len, 100);
	assert_memory_equal(rec->value.ptr, want, 100);
	assert_int_equal(ts, 1000 + offset % 20);
	w->offsets[w->n++] = offset;
	return w->n == w->stop_at;
}

static void test_walk_records_across_codecs(void **state)
{
	(void)state;
	/* A range as the log holds it: a zstd batch (offsets 0-19), then a plain one (20-39). */
	buf_t range = { 0 }, b = { 0 }, scratch = { 0 };
	compressed_batch(RB_CODEC_ZSTD, 20, false, &b);
	rb_set_base_offset(b.data, 0);
	buf_append(&range, b.data, b.len);
	tu_batch(&b, 0, 20, 100, 1000);
	rb_set_base_offset(b.data, 20);
	buf_append(&range, b.data, b.len);
	walk_t w = { .n = 0, .stop_at = -1 };
	assert_int_equal(codec_walk_records(range.data, range.len, &scratch, collect, &w), OK);
	assert_int_equal(w.n, 40);
	for (int i = 0; i < 40; i++)
		assert_int_equal(w.offsets[i], i);
	/* The callback can stop the walk. */
	walk_t w2 = { .n = 0, .stop_at = 25 };
	assert_int_equal(codec_walk_records(range.data, range.len, &scratch, collect, &w2), OK);
	assert_int_equal(w2.n, 25);
	/* A damaged batch stops it with an error. */
	range.data[range.len - 3] ^= 1;
	walk_t w3 = { .n = 0, .stop_at = -1 };
	assert_int_equal(codec_walk_records(range.data, range.len, &scratch, collect, &w3), ERR_CRC);
	assert_int_equal(w3.n, 20);
	buf_free(&range);
	buf_free(&b);
	buf_free(&scratch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_every_codec),
		cmocka_unit_test(test_validate_compressed_batches),
		cmocka_unit_test(test_partition_stores_compressed_as_sent),
		cmocka_unit_test(test_walk_records_across_codecs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
