/*
 * codec.h -- the Kafka record codecs: gzip (zlib), snappy (raw and xerial framing), lz4 (frame), zstd.
 *
 * Purpose: decompress a batch's records to validate them on produce (and later to read them over HTTP);
 * batches stay stored as sent. Pure: no I/O. Output is bounded by max_out (a decompression bomb is
 * ERR_LIMIT); corrupt input is ERR_MALFORMED.
 */
#ifndef FL_STORAGE_CODEC_H
#define FL_STORAGE_CODEC_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
#include "storage/recordbatch.h"

#define CODEC_MAX_OUT ((size_t)128 << 20)

/* Appends the decompressed form of in (codec RB_CODEC_*) to out. */
err_t codec_decompress(int codec, slice_t in, buf_t *out, size_t max_out);

/* Validates a compressed batch: decompresses its records and checks that they parse, that there are
 * recordsCount of them with offsetDelta 0..n-1. Uncompressed batches are left to rb_validate. */
err_t codec_validate_batch(const uint8_t *batch, size_t len);

/* Called for each record: its batch header, the record, its offset and timestamp (LogAppendTime applied).
 * Return nonzero to stop the walk. */
typedef int (*rb_record_fn)(void *arg, const rb_header_t *h, const rb_record_t *rec, int64_t offset,
			    int64_t timestamp);

/* Walks every record of the whole batches in data[0..len) (as a log range holds them), decompressing
 * compressed batches into scratch (owned by the caller, reused across calls). Checks each batch's CRC;
 * a bad batch or record stops the walk with an error. Records come in offset order. */
err_t codec_walk_records(const uint8_t *data, size_t len, buf_t *scratch, rb_record_fn fn, void *arg);

#endif
