/* codec.c -- gzip, snappy, lz4 and zstd decompression for Kafka batches. See codec.h. */
#include "storage/codec.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "core/compat.h"
#include "core/fl_assert.h"
#include "storage/recordbatch.h"

static err_t gunzip(slice_t in, buf_t *out, size_t max_out)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return ERR_SYS(ENOMEM);
	z.next_in = (Bytef *)(uintptr_t)in.ptr;
	z.avail_in = (uInt)in.len;
	err_t rc = OK;
	for (;;) {
		buf_reserve(out, 64 * 1024);
		z.next_out = out->data + out->len;
		z.avail_out = (uInt)(out->cap - out->len);
		int zr = inflate(&z, Z_NO_FLUSH);
		out->len = out->cap - z.avail_out;
		if (out->len > max_out) {
			rc = ERR_LIMIT;
			break;
		}
		if (zr == Z_STREAM_END) {
			if (z.avail_in == 0)
				break;
			inflateReset(&z); /* concatenated gzip members */
			continue;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			rc = ERR_MALFORMED;
			break;
		}
		if (zr == Z_BUF_ERROR && z.avail_in == 0) {
			rc = ERR_MALFORMED; /* truncated */
			break;
		}
	}
	inflateEnd(&z);
	return rc;
}

static err_t unsnappy_raw(const uint8_t *p, size_t n, buf_t *out, size_t max_out)
{
	size_t ulen;
	if (snappy_uncompressed_length((const char *)p, n, &ulen) != SNAPPY_OK)
		return ERR_MALFORMED;
	if (ulen > max_out - out->len)
		return ERR_LIMIT;
	buf_reserve(out, ulen + 1);
	if (snappy_uncompress((const char *)p, n, (char *)out->data + out->len, &ulen) != SNAPPY_OK)
		return ERR_MALFORMED;
	out->len += ulen;
	return OK;
}

static err_t unsnappy(slice_t in, buf_t *out, size_t max_out)
{
	static const uint8_t xerial[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };
	if (in.len < 16 || memcmp(in.ptr, xerial, 8) != 0)
		return unsnappy_raw(in.ptr, in.len, out, max_out);
	/* snappy-java framing: magic, version, compatible version, then [int32 length][raw block]... */
	size_t pos = 16;
	while (pos < in.len) {
		if (in.len - pos < 4)
			return ERR_MALFORMED;
		uint32_t n = be32_load(in.ptr + pos);
		pos += 4;
		if (n > in.len - pos)
			return ERR_MALFORMED;
		err_t rc = unsnappy_raw(in.ptr + pos, n, out, max_out);
		if (rc != OK)
			return rc;
		pos += n;
	}
	return OK;
}

static err_t unlz4(slice_t in, buf_t *out, size_t max_out)
{
	LZ4F_dctx *ctx;
	if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION)))
		return ERR_SYS(ENOMEM);
	size_t pos = 0;
	err_t rc = OK;
	for (int guard = 0; guard < (1 << 20); guard++) {
		buf_reserve(out, 64 * 1024);
		size_t dst = out->cap - out->len, src = in.len - pos;
		size_t r = LZ4F_decompress(ctx, out->data + out->len, &dst, in.ptr + pos, &src, NULL);
		if (LZ4F_isError(r)) {
			rc = ERR_MALFORMED;
			break;
		}
		out->len += dst;
		pos += src;
		if (out->len > max_out) {
			rc = ERR_LIMIT;
			break;
		}
		if (r == 0 && pos == in.len)
			break; /* frame complete */
		if (pos == in.len && dst == 0) {
			rc = ERR_MALFORMED; /* truncated frame */
			break;
		}
	}
	LZ4F_freeDecompressionContext(ctx);
	return rc;
}

static err_t unzstd(slice_t in, buf_t *out, size_t max_out)
{
	ZSTD_DStream *ds = ZSTD_createDStream();
	if (ds == NULL)
		return ERR_SYS(ENOMEM);
	ZSTD_inBuffer ib = { in.ptr, in.len, 0 };
	err_t rc = OK;
	size_t last = 1;
	for (int guard = 0; guard < (1 << 20); guard++) {
		buf_reserve(out, 64 * 1024);
		ZSTD_outBuffer ob = { out->data + out->len, out->cap - out->len, 0 };
		last = ZSTD_decompressStream(ds, &ob, &ib);
		out->len += ob.pos;
		if (ZSTD_isError(last)) {
			rc = ERR_MALFORMED;
			break;
		}
		if (out->len > max_out) {
			rc = ERR_LIMIT;
			break;
		}
		if (ib.pos == ib.size && ob.pos < ob.size)
			break;
	}
	if (rc == OK && last != 0)
		rc = ERR_MALFORMED; /* the last frame is incomplete */
	ZSTD_freeDStream(ds);
	return rc;
}

err_t codec_decompress(int codec, slice_t in, buf_t *out, size_t max_out)
{
	switch (codec) {
	case RB_CODEC_GZIP: return gunzip(in, out, max_out);
	case RB_CODEC_SNAPPY: return unsnappy(in, out, max_out);
	case RB_CODEC_LZ4: return unlz4(in, out, max_out);
	case RB_CODEC_ZSTD: return unzstd(in, out, max_out);
	default: return ERR_MALFORMED;
	}
}

err_t codec_validate_batch(const uint8_t *batch, size_t len)
{
	rb_header_t h;
	err_t rc = rb_check_stored(batch, len, &h);
	if (rc != OK || rb_codec(&h) == RB_CODEC_NONE)
		return rc;
	buf_t out = { 0 };
	rc = codec_decompress(rb_codec(&h), slice_make(batch + RB_HEADER_LEN, len - RB_HEADER_LEN), &out,
			      CODEC_MAX_OUT);
	if (rc == OK) {
		reader_t r = reader_make(out.data, out.len);
		for (int32_t i = 0; i < h.records_count && rc == OK; i++) {
			rb_record_t rec;
			rb_record_next(&r, &rec);
			if (r.err != OK || rec.offset_delta != i)
				rc = ERR_MALFORMED;
		}
		if (rc == OK && reader_left(&r) != 0)
			rc = ERR_MALFORMED;
	}
	buf_free(&out);
	return rc;
}

err_t codec_walk_records(const uint8_t *data, size_t len, buf_t *scratch, rb_record_fn fn, void *arg)
{
	size_t pos = 0;
	while (pos + RB_HEADER_LEN <= len) {
		rb_header_t h;
		int64_t blen = RB_LOG_OVERHEAD + (int32_t)be32_load(data + pos + 8);
		if (blen < RB_HEADER_LEN || (size_t)blen > len - pos)
			return ERR_CORRUPT;
		err_t rc = rb_check_stored(data + pos, (size_t)blen, &h);
		if (rc != OK)
			return rc;
		slice_t recs = slice_make(data + pos + RB_HEADER_LEN, (size_t)blen - RB_HEADER_LEN);
		if (rb_codec(&h) != RB_CODEC_NONE) {
			scratch->len = 0;
			rc = codec_decompress(rb_codec(&h), recs, scratch, CODEC_MAX_OUT);
			if (rc != OK)
				return rc;
			recs = slice_make(scratch->data, scratch->len);
		}
		reader_t r = reader_make(recs.ptr, recs.len);
		for (int32_t i = 0; i < h.records_count; i++) {
			rb_record_t rec;
			rb_record_next(&r, &rec);
			if (r.err != OK)
				return ERR_CORRUPT;
			int64_t ts = (h.attributes & RB_ATTR_LOG_APPEND_TIME) ? h.max_timestamp
									      : h.base_timestamp + rec.timestamp_delta;
			if (fn(arg, &h, &rec, h.base_offset + rec.offset_delta, ts) != 0)
				return OK;
		}
		pos += (size_t)blen;
	}
	return OK;
}
