/* clock.c -- the system clock and a manual clock for tests. */
#include "core/clock.h"

#include <time.h>

#include "core/compat.h"

static int64_t sys_wall_ms(const clock_src_t *c)
{
	(void)c;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t sys_mono_ns(const clock_src_t *c)
{
	(void)c;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const clock_src_t system_clock = { sys_wall_ms, sys_mono_ns, NULL };

const clock_src_t *clock_system(void)
{
	return &system_clock;
}

static int64_t manual_wall_ms(const clock_src_t *c)
{
	return *(const int64_t *)c->ctx;
}

static int64_t manual_mono_ns(const clock_src_t *c)
{
	return *(const int64_t *)c->ctx * 1000000;
}

void clock_manual_init(clock_src_t *c, int64_t *now_ms)
{
	c->wall_ms = manual_wall_ms;
	c->mono_ns = manual_mono_ns;
	c->ctx = now_ms;
}
