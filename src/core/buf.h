/*
 * buf.h -- borrowed slices, owned growable buffers, and a bounds-checked big-endian reader.
 *
 * Ownership:
 *   slice_t  borrows: it never frees and lives no longer than what it points into.
 *   buf_t    owns data; {0} is a valid empty buffer; buf_free() returns it to {0}.
 *   reader_t borrows its input. Its error is sticky: the first failed read sets r->err and every later
 *            read returns zeros, so a decoder runs straight through and checks r->err once at the end.
 * Invariants: 0 <= len <= cap for buf_t; pos <= end for reader_t.
 * Threads: none of these are shared between threads without the owner's lock.
 */
#ifndef FL_CORE_BUF_H
#define FL_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

typedef struct {
	const uint8_t *ptr;
	size_t len;
} slice_t;

typedef struct {
	uint8_t *data;
	size_t len, cap;
} buf_t;

typedef struct {
	const uint8_t *pos, *end;
	err_t err;
} reader_t;

static inline slice_t slice_make(const void *ptr, size_t len)
{
	slice_t s = { (const uint8_t *)ptr, len };
	return s;
}

static inline slice_t slice_cstr(const char *s)
{
	return slice_make(s, strlen(s));
}

static inline int slice_eq(slice_t a, slice_t b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Whether s[0..n) holds only Kafka's legal topic-name characters, [a-zA-Z0-9._-] (which JSON never escapes). */
static inline int topic_chars_legal(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* --- buf_t: an owned byte buffer. Allocation failure aborts (buffers are sized by config limits). --- */
void buf_reserve(buf_t *b, size_t extra);
/* Inline: encoders call it for every few bytes (the functions runtime's CloudEvent text, per event). */
static inline void buf_append(buf_t *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	if (b->cap - b->len < len)
		buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
}
void buf_free(buf_t *b);
void buf_put_u8(buf_t *b, uint8_t v);
void buf_put_be16(buf_t *b, uint16_t v);
void buf_put_be32(buf_t *b, uint32_t v);
void buf_put_be64(buf_t *b, uint64_t v);
void buf_put_uvarint(buf_t *b, uint64_t v);
void buf_put_varint(buf_t *b, int64_t v); /* zig-zag */

/* Big-endian loads and stores on raw memory (no bounds checks: callers checked the length). */
static inline uint16_t be16_load(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}
static inline uint32_t be32_load(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t be64_load(const uint8_t *p)
{
	return (uint64_t)be32_load(p) << 32 | be32_load(p + 4);
}
static inline void be16_store(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void be32_store(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void be64_store(uint8_t *p, uint64_t v)
{
	be32_store(p, (uint32_t)(v >> 32));
	be32_store(p + 4, (uint32_t)v);
}

/* --- reader_t --- */
static inline reader_t reader_make(const void *ptr, size_t len)
{
	reader_t r = { (const uint8_t *)ptr, (const uint8_t *)ptr + len, OK };
	return r;
}

static inline size_t reader_left(const reader_t *r)
{
	return (size_t)(r->end - r->pos);
}

/* Marks the reader failed (first error wins) and returns 0 for the caller to pass on. */
static inline int reader_fail(reader_t *r, err_t err)
{
	if (r->err == OK)
		r->err = err;
	r->pos = r->end;
	return 0;
}

static inline const uint8_t *reader_take(reader_t *r, size_t n)
{
	if (r->err != OK || reader_left(r) < n) {
		reader_fail(r, ERR_INCOMPLETE);
		return NULL;
	}
	const uint8_t *p = r->pos;
	r->pos += n;
	return p;
}

/* n bytes as a slice; after a failed read the slice is empty, never {NULL, n}. */
static inline slice_t reader_slice(reader_t *r, size_t n)
{
	const uint8_t *p = reader_take(r, n);
	return slice_make(p, p ? n : 0);
}

static inline uint8_t reader_u8(reader_t *r)
{
	const uint8_t *p = reader_take(r, 1);
	return p ? p[0] : 0;
}
static inline int16_t reader_i16(reader_t *r)
{
	const uint8_t *p = reader_take(r, 2);
	return p ? (int16_t)be16_load(p) : 0;
}
static inline int32_t reader_i32(reader_t *r)
{
	const uint8_t *p = reader_take(r, 4);
	return p ? (int32_t)be32_load(p) : 0;
}
static inline int64_t reader_i64(reader_t *r)
{
	const uint8_t *p = reader_take(r, 8);
	return p ? (int64_t)be64_load(p) : 0;
}

/* Unsigned LEB128 of at most 10 bytes; a longer or overflowing encoding is ERR_MALFORMED. */
uint64_t reader_uvarint(reader_t *r);
/* Zig-zag signed varint (Kafka varlong); varint() additionally requires the value to fit in int32. */
int64_t reader_varlong(reader_t *r);
int32_t reader_varint(reader_t *r);

#endif
