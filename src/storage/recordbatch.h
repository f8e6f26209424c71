/*
 * recordbatch.h -- Kafka RecordBatch v2: the unit the log stores, byte for byte as it goes on the wire.
 *
 * Purpose: pure functions over batch bytes (no I/O, clock or globals), so they are fuzzed and tested with
 * golden bytes: decode and validate a header, validate a whole batch, patch the fields the broker owns,
 * walk uncompressed records, and build a batch (tests, benchmarks, the HTTP gateway).
 *
 * Layout (big-endian, 61-byte header): baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
 * partitionLeaderEpoch i32 @12, magic i8 @16 (=2), crc u32 @17 (CRC-32C of bytes 21..end), attributes i16
 * @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43,
 * producerEpoch i16 @51, baseSequence i32 @53, recordsCount i32 @57, records @61.
 * Invariants: baseOffset, batchLength and partitionLeaderEpoch lie outside the CRC, so the broker patches
 * them without recomputing it; any other patch (LogAppendTime) recomputes the CRC.
 */
#ifndef FL_STORAGE_RECORDBATCH_H
#define FL_STORAGE_RECORDBATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

#define RB_HEADER_LEN 61
#define RB_LOG_OVERHEAD 12    /* baseOffset + batchLength: what precedes the counted bytes */
#define RB_MIN_BATCH_LENGTH 49 /* batchLength of a header with no records */
#define RB_MAGIC 2

#define RB_ATTR_CODEC_MASK 0x07
#define RB_ATTR_LOG_APPEND_TIME 0x08
#define RB_ATTR_TRANSACTIONAL 0x10
#define RB_ATTR_CONTROL 0x20

enum { RB_CODEC_NONE = 0, RB_CODEC_GZIP = 1, RB_CODEC_SNAPPY = 2, RB_CODEC_LZ4 = 3, RB_CODEC_ZSTD = 4 };

typedef struct {
	int64_t base_offset;
	int32_t batch_length;
	int32_t partition_leader_epoch;
	int8_t magic;
	uint32_t crc;
	int16_t attributes;
	int32_t last_offset_delta;
	int64_t base_timestamp;
	int64_t max_timestamp;
	int64_t producer_id;
	int16_t producer_epoch;
	int32_t base_sequence;
	int32_t records_count;
} rb_header_t;

/* Decodes the 61-byte header at p (len >= RB_HEADER_LEN, else ERR_INCOMPLETE). Checks only the magic
 * (ERR_MALFORMED) and that batchLength >= RB_MIN_BATCH_LENGTH. */
err_t rb_header_decode(const uint8_t *p, size_t len, rb_header_t *h);

static inline int64_t rb_total_len(const rb_header_t *h)
{
	return RB_LOG_OVERHEAD + (int64_t)h->batch_length;
}
static inline int64_t rb_last_offset(const rb_header_t *h)
{
	return h->base_offset + h->last_offset_delta;
}
static inline int rb_codec(const rb_header_t *h)
{
	return h->attributes & RB_ATTR_CODEC_MASK;
}

/* CRC-32C over bytes 21..len of a batch (what the crc field must hold). */
uint32_t rb_compute_crc(const uint8_t *p, size_t len);

/* Validates a whole batch that a producer sent: exactly len bytes, magic 2, CRC, recordsCount > 0 and
 * = lastOffsetDelta + 1, a known codec, not a control batch, baseSequence >= 0 with a producer id, no
 * client-set LogAppendTime bit (ERR_TIMESTAMP), and for uncompressed batches every record parses with
 * offsetDelta 0..n-1. Returns OK or ERR_MALFORMED / ERR_CRC / ERR_TIMESTAMP and fills *h. */
err_t rb_validate(const uint8_t *p, size_t len, rb_header_t *h);

/* Validates a batch read back from the log: the header, length, and CRC (not the producer rules). */
err_t rb_check_stored(const uint8_t *p, size_t len, rb_header_t *h);

/* Patches outside the CRC. */
static inline void rb_set_base_offset(uint8_t *p, int64_t base_offset)
{
	be64_store(p, (uint64_t)base_offset);
}
static inline void rb_set_leader_epoch(uint8_t *p, int32_t epoch)
{
	be32_store(p + 12, (uint32_t)epoch);
}
/* Marks the batch LogAppendTime with maxTimestamp = ts and recomputes the CRC. */
void rb_set_log_append_time(uint8_t *p, size_t len, int64_t ts);

/* --- records of an uncompressed batch (or of a decompressed blob) --- */
typedef struct {
	int32_t length;
	int8_t attributes;
	int64_t timestamp_delta;
	int32_t offset_delta;
	bool key_null, value_null;
	slice_t key, value;
	int32_t headers_count;
	slice_t headers; /* the raw header bytes; walk them with rb_header_next */
} rb_record_t;

/* Reads the next record from r (positioned at a record). Errors are left in r->err. */
void rb_record_next(reader_t *r, rb_record_t *rec);
/* Reads the next record header (key, value) of a record's header bytes. */
void rb_record_header_next(reader_t *r, slice_t *key, slice_t *value, bool *value_null);

/* --- building batches --- */
typedef struct {
	slice_t key, value;
	bool value_null;
} rb_kv_t;

typedef struct {
	buf_t buf; /* the batch; owned by the builder until rb_builder_take */
	int32_t count;
	int64_t base_timestamp, max_timestamp;
} rb_builder_t;

/* Starts a batch; producer_id -1 for a non-idempotent producer. */
void rb_builder_init(rb_builder_t *b, int64_t producer_id, int16_t producer_epoch, int32_t base_sequence);
/* Adds a record. key/value with ptr NULL are null. headers may be NULL when nheaders is 0. */
void rb_builder_add(rb_builder_t *b, int64_t timestamp, slice_t key, slice_t value, const rb_kv_t *headers,
		    int nheaders);
/* Completes the header (counts, timestamps, CRC) and returns the batch bytes, owned by the builder. */
slice_t rb_builder_finish(rb_builder_t *b);
void rb_builder_free(rb_builder_t *b);

#endif
