/*
 * fl_assert.h -- assertions that stay on.
 *
 * ASSERT guards invariants whose breach would corrupt data (monotonic offsets, segment bounds, state
 * transitions); it stays on in release builds. DASSERT is for hot loops and compiles away with NDEBUG.
 * Bytes from the network or the disk are validated and return errors; they are never ASSERTed.
 */
#ifndef FL_CORE_ASSERT_H
#define FL_CORE_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(cond)                                                                              \
	do {                                                                                      \
		if (__builtin_expect(!(cond), 0)) {                                               \
			fprintf(stderr, "factlog: assertion failed: %s (%s:%d, %s)\n", #cond,     \
				__FILE__, __LINE__, __func__);                                    \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

#ifdef NDEBUG
#define DASSERT(cond) ((void)0)
#else
#define DASSERT(cond) ASSERT(cond)
#endif

#endif
