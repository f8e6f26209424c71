/*
 * clock.h -- an injectable clock.
 *
 * Storage and the front doors read time only through a clock_src_t, so tests (and later a deterministic
 * simulator) can drive it. clock_system() returns the process's real clock; it is immutable and shared.
 * wall_ms is Unix time in milliseconds (timestamps, retention by age); mono_ns is monotonic (timeouts).
 */
#ifndef FL_CORE_CLOCK_H
#define FL_CORE_CLOCK_H

#include <stdint.h>

typedef struct clock_src clock_src_t;
struct clock_src {
	int64_t (*wall_ms)(const clock_src_t *c);
	int64_t (*mono_ns)(const clock_src_t *c);
	void *ctx;
};

const clock_src_t *clock_system(void);

static inline int64_t clock_wall_ms(const clock_src_t *c)
{
	return c->wall_ms(c);
}
static inline int64_t clock_mono_ns(const clock_src_t *c)
{
	return c->mono_ns(c);
}

/* A manual clock for tests: both readings come from *(int64_t *)ctx, in milliseconds. */
void clock_manual_init(clock_src_t *c, int64_t *now_ms);

#endif
