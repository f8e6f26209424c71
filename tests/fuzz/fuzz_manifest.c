/* fuzz_manifest.c -- the archive's manifest parser (archiver.h) on arbitrary bytes: never a crash; what it
 * accepts is contiguous and well formed, and reads back the same after being written out again. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/fl_assert.h"
#include "storage/archiver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	archived_seg_t *segs = NULL;
	size_t n = 0;
	if (archive_manifest_parse(data, size, &segs, &n) != OK) {
		ASSERT(segs == NULL && n == 0);
		return 0;
	}
	buf_t b = { 0 };
	const char *magic = "factlog-archive-manifest 1\n";
	buf_append(&b, magic, strlen(magic));
	for (size_t i = 0; i < n; i++) {
		ASSERT(segs[i].base >= 0 && segs[i].next > segs[i].base && segs[i].size > 0);
		ASSERT(i == 0 || segs[i].base == segs[i - 1].next);
		char line[128];
		int k = snprintf(line, sizeof line, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n", segs[i].base,
				 segs[i].next, segs[i].size, segs[i].max_ts);
		buf_append(&b, line, (size_t)k);
	}
	archived_seg_t *again = NULL;
	size_t m = 0;
	ASSERT(archive_manifest_parse(b.data, b.len, &again, &m) == OK);
	ASSERT(m == n && (n == 0 || memcmp(again, segs, n * sizeof *segs) == 0));
	free(again);
	free(segs);
	buf_free(&b);
	return 0;
}
