/* buf.c -- owned buffers and varint decoding. See buf.h. */
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/fl_assert.h"

void buf_reserve(buf_t *b, size_t extra)
{
	ASSERT(b->len <= b->cap);
	if (b->cap - b->len >= extra)
		return;
	size_t need = b->len + extra;
	ASSERT(need >= b->len); /* no overflow */
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	uint8_t *p = realloc(b->data, cap);
	if (p == NULL) {
		fprintf(stderr, "factlog: out of memory growing a buffer to %zu bytes\n", cap);
		abort();
	}
	b->data = p;
	b->cap = cap;
}

void buf_free(buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_put_u8(buf_t *b, uint8_t v)
{
	buf_append(b, &v, 1);
}

void buf_put_be16(buf_t *b, uint16_t v)
{
	uint8_t t[2];
	be16_store(t, v);
	buf_append(b, t, 2);
}

void buf_put_be32(buf_t *b, uint32_t v)
{
	uint8_t t[4];
	be32_store(t, v);
	buf_append(b, t, 4);
}

void buf_put_be64(buf_t *b, uint64_t v)
{
	uint8_t t[8];
	be64_store(t, v);
	buf_append(b, t, 8);
}

void buf_put_uvarint(buf_t *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	buf_append(b, t, n);
}

void buf_put_varint(buf_t *b, int64_t v)
{
	buf_put_uvarint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

uint64_t reader_uvarint(reader_t *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 70; shift += 7) {
		const uint8_t *p = reader_take(r, 1);
		if (p == NULL)
			return 0;
		if (shift == 63 && (*p & 0x7e) != 0)
			return (uint64_t)reader_fail(r, ERR_MALFORMED);
		v |= (uint64_t)(*p & 0x7f) << shift;
		if ((*p & 0x80) == 0)
			return v;
	}
	return (uint64_t)reader_fail(r, ERR_MALFORMED);
}

int64_t reader_varlong(reader_t *r)
{
	uint64_t u = reader_uvarint(r);
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

int32_t reader_varint(reader_t *r)
{
	int64_t v = reader_varlong(r);
	if (v < INT32_MIN || v > INT32_MAX)
		return reader_fail(r, ERR_MALFORMED);
	return (int32_t)v;
}
