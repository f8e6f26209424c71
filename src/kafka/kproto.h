/*
 * kproto.h -- Kafka wire primitives over reader_t (decoding) and buf_t (encoding).
 *
 * Pure and inline. Strings and bytes decode to slices into the request buffer (never NUL-terminated).
 * Array counts are checked against the bytes left before any caller loops or allocates: an element takes
 * at least one byte, so a count above reader_left() is ERR_MALFORMED (the CVE-2022-34917 lesson).
 * Flexible ("compact") versions use unsigned varints with N+1 encodings and tagged-field sections.
 */
#ifndef FL_KAFKA_KPROTO_H
#define FL_KAFKA_KPROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct {
	slice_t s;
	bool null;
} kstr_t;

static inline kstr_t kr_string(reader_t *r) /* int16 length, -1 = null */
{
	kstr_t k = { { NULL, 0 }, false };
	int16_t n = reader_i16(r);
	if (n < -1) {
		reader_fail(r, ERR_MALFORMED);
		return k;
	}
	if (n == -1) {
		k.null = true;
		return k;
	}
	k.s = reader_slice(r, (size_t)n);
	return k;
}

static inline kstr_t kr_compact_string(reader_t *r) /* uvarint length + 1, 0 = null */
{
	kstr_t k = { { NULL, 0 }, false };
	uint64_t n = reader_uvarint(r);
	if (n == 0) {
		k.null = true;
		return k;
	}
	if (n - 1 > reader_left(r)) {
		reader_fail(r, ERR_MALFORMED);
		return k;
	}
	k.s = reader_slice(r, (size_t)(n - 1));
	return k;
}

static inline kstr_t kr_bytes(reader_t *r) /* int32 length, -1 = null */
{
	kstr_t k = { { NULL, 0 }, false };
	int32_t n = reader_i32(r);
	if (n < -1 || (n > 0 && (size_t)n > reader_left(r))) {
		reader_fail(r, ERR_MALFORMED);
		return k;
	}
	if (n == -1) {
		k.null = true;
		return k;
	}
	k.s = reader_slice(r, (size_t)n);
	return k;
}

/* Array count: int32, -1 = null (returned as -1). Counts beyond the bytes left are malformed. */
static inline int32_t kr_array(reader_t *r)
{
	int32_t n = reader_i32(r);
	if (n < -1 || (n > 0 && (size_t)n > reader_left(r)))
		return reader_fail(r, ERR_MALFORMED) - 1;
	return n;
}

static inline int32_t kr_compact_array(reader_t *r)
{
	uint64_t n = reader_uvarint(r);
	if (n == 0)
		return -1;
	if (n - 1 > reader_left(r))
		return reader_fail(r, ERR_MALFORMED) - 1;
	return (int32_t)(n - 1);
}

/* Skips a tagged-field section, bounding the count and each size by the bytes left. */
static inline void kr_tags(reader_t *r)
{
	uint64_t n = reader_uvarint(r);
	if (n > reader_left(r)) {
		reader_fail(r, ERR_MALFORMED);
		return;
	}
	for (uint64_t i = 0; i < n && r->err == OK; i++) {
		reader_uvarint(r); /* tag */
		uint64_t size = reader_uvarint(r);
		if (size > reader_left(r)) {
			reader_fail(r, ERR_MALFORMED);
			return;
		}
		reader_take(r, (size_t)size);
	}
}

static inline void kw_i8(buf_t *b, int8_t v)
{
	buf_put_u8(b, (uint8_t)v);
}
static inline void kw_i16(buf_t *b, int16_t v)
{
	buf_put_be16(b, (uint16_t)v);
}
static inline void kw_i32(buf_t *b, int32_t v)
{
	buf_put_be32(b, (uint32_t)v);
}
static inline void kw_i64(buf_t *b, int64_t v)
{
	buf_put_be64(b, (uint64_t)v);
}
static inline void kw_bool(buf_t *b, bool v)
{
	buf_put_u8(b, v ? 1 : 0);
}
static inline void kw_string(buf_t *b, slice_t s)
{
	kw_i16(b, (int16_t)s.len);
	buf_append(b, s.ptr, s.len);
}
static inline void kw_cstring(buf_t *b, const char *s)
{
	kw_string(b, slice_cstr(s));
}
static inline void kw_null_string(buf_t *b)
{
	kw_i16(b, -1);
}
static inline void kw_nstring(buf_t *b, const char *s) /* NULL -> null string */
{
	if (s == NULL)
		kw_null_string(b);
	else
		kw_cstring(b, s);
}
static inline void kw_compact_string(buf_t *b, slice_t s)
{
	buf_put_uvarint(b, s.len + 1);
	buf_append(b, s.ptr, s.len);
}
static inline void kw_compact_array(buf_t *b, int32_t n)
{
	buf_put_uvarint(b, (uint64_t)n + 1);
}
static inline void kw_tags(buf_t *b)
{
	buf_put_u8(b, 0);
}

/* Kafka error codes that factlog answers with. */
enum {
	KERR_UNKNOWN_SERVER_ERROR = -1,
	KERR_NONE = 0,
	KERR_OFFSET_OUT_OF_RANGE = 1,
	KERR_CORRUPT_MESSAGE = 2,
	KERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
	KERR_MESSAGE_TOO_LARGE = 10,
	KERR_REQUEST_TIMED_OUT = 7,
	KERR_COORDINATOR_NOT_AVAILABLE = 15,
	KERR_NOT_COORDINATOR = 16,
	KERR_INVALID_TOPIC_EXCEPTION = 17,
	KERR_ILLEGAL_GENERATION = 22,
	KERR_INCONSISTENT_GROUP_PROTOCOL = 23,
	KERR_INVALID_GROUP_ID = 24,
	KERR_UNKNOWN_MEMBER_ID = 25,
	KERR_INVALID_SESSION_TIMEOUT = 26,
	KERR_REBALANCE_IN_PROGRESS = 27,
	KERR_NON_EMPTY_GROUP = 68,
	KERR_GROUP_ID_NOT_FOUND = 69,
	KERR_MEMBER_ID_REQUIRED = 79,
	KERR_RECORD_LIST_TOO_LARGE = 18,
	KERR_INVALID_REQUIRED_ACKS = 21,
	KERR_INVALID_TIMESTAMP = 32,
	KERR_UNSUPPORTED_VERSION = 35,
	KERR_TOPIC_ALREADY_EXISTS = 36,
	KERR_INVALID_PARTITIONS = 37,
	KERR_INVALID_REPLICATION_FACTOR = 38,
	KERR_INVALID_REPLICA_ASSIGNMENT = 39,
	KERR_INVALID_CONFIG = 40,
	KERR_INVALID_REQUEST = 42,
	KERR_UNSUPPORTED_FOR_MESSAGE_FORMAT = 43,
	KERR_OUT_OF_ORDER_SEQUENCE_NUMBER = 45,
	KERR_DUPLICATE_SEQUENCE_NUMBER = 46,
	KERR_INVALID_PRODUCER_EPOCH = 47,
	KERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
	KERR_KAFKA_STORAGE_ERROR = 56,
	KERR_UNKNOWN_PRODUCER_ID = 59,
	KERR_UNSUPPORTED_COMPRESSION_TYPE = 76,
};

#endif
