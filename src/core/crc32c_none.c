/* crc32c_none.c -- architectures without a CRC-32C instruction path: the table version serves. */
#include "core/crc32c.h"

#include "core/compat.h"

int crc32c_hw_available(void)
{
	return 0;
}

uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len)
{
	return crc32c_sw(crc, data, len);
}
