/* crc32c_x86.c -- CRC-32C with the SSE4.2 crc32 instruction (selected by meson on x86_64). */
#include "core/crc32c.h"

#include <nmmintrin.h>
#include <pthread.h>
#include <string.h>

#include "core/compat.h"

int crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}

/*
 * Long inputs run as three independent streams: the crc32 instruction takes 3 cycles but can start one per
 * cycle, so one stream uses a third of it. For a round of three blocks A, B, C of STRIDE bytes each, stream 0
 * continues the running register over A while streams 1 and 2 start from 0 over B and C; then, since the
 * register is linear over GF(2), reg(A||B) = reg(A) * x^(8*STRIDE) mod P  xor  reg0(B), and likewise for C.
 * Multiplying by x^(8*STRIDE) is a table lookup per byte of the register (shift_table, built on first use).
 */
#define STRIDE 4096
#define POLY 0x82F63B78u /* Castagnoli, bit-reflected */

/* a * b modulo P, both bit-reflected (bit 31 is x^0). */
static uint32_t mulmod(uint32_t a, uint32_t b)
{
	uint32_t prod = 0;
	for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
		if (a & m)
			prod ^= b;
		b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
	}
	return prod;
}

/* x^(8n) modulo P, bit-reflected. */
static uint32_t xpow8n(size_t n)
{
	uint32_t result = 1u << 31, base = 1u << 23; /* x^0 and x^8 */
	for (; n != 0; n >>= 1) {
		if (n & 1)
			result = mulmod(result, base);
		base = mulmod(base, base);
	}
	return result;
}

/* shift[k][b] = (b << 8k) * x^(8*STRIDE) mod P, built once (pthread_once) on the first long input. */
static uint32_t shift_table[4][256];
static pthread_once_t shift_once = PTHREAD_ONCE_INIT;

static uint32_t shift(uint32_t c)
{
	return shift_table[0][c & 0xff] ^ shift_table[1][(c >> 8) & 0xff] ^ shift_table[2][(c >> 16) & 0xff] ^
	       shift_table[3][c >> 24];
}

static void shift_init(void)
{
	uint32_t k = xpow8n(STRIDE);
	for (int j = 0; j < 4; j++)
		for (uint32_t b = 0; b < 256; b++)
			shift_table[j][b] = mulmod(b << (8 * j), k);
}

__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t c = ~crc;
	if (len >= 3 * STRIDE) {
		pthread_once(&shift_once, shift_init);
		do {
			uint64_t c1 = 0, c2 = 0;
			for (size_t i = 0; i < STRIDE; i += 8) {
				uint64_t w0, w1, w2;
				memcpy(&w0, p + i, 8);
				memcpy(&w1, p + STRIDE + i, 8);
				memcpy(&w2, p + 2 * STRIDE + i, 8);
				c = _mm_crc32_u64(c, w0);
				c1 = _mm_crc32_u64(c1, w1);
				c2 = _mm_crc32_u64(c2, w2);
			}
			c = shift(shift((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
			p += 3 * STRIDE;
			len -= 3 * STRIDE;
		} while (len >= 3 * STRIDE);
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = _mm_crc32_u8(c32, *p++);
	return ~c32;
}
