/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of Kafka RecordBatch v2.
 *
 * crc32c(0, data, len) is the CRC of data; crc32c(crc32c(0, a, n), b, m) is the CRC of a||b.
 * The SSE4.2 instruction is used when the CPU has it (checked once per call through a cached CPUID
 * read; inputs of 12 KiB and more run as three interleaved streams, about 3x faster), else a slicing-by-8
 * table. Both are pure and thread-safe. Check value: "123456789" -> 0xE3069283.
 */
#ifndef FL_CORE_CRC32C_H
#define FL_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The two implementations, exposed so tests can compare them. */
uint32_t crc32c_sw(uint32_t crc, const void *data, size_t len);
int crc32c_hw_available(void);
uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len); /* only when crc32c_hw_available() */

#endif
