/*
 * loop.h -- an epoll event loop: file-descriptor watchers, timers and cross-thread tasks.
 *
 * Purpose: the only unbounded loop in factlog. One loop runs per network thread; it owns its connections
 * and never blocks on disk (fsync runs on the storage flusher) or anything else.
 * Invariants:
 *   1. Every callback runs on the loop's own thread, never inside the call that registered it.
 *   2. loop_post() is the only function safe from other threads; it never allocates (the task is
 *      caller-owned and intrusive) and wakes the loop through an eventfd.
 *   3. A stopped timer or removed watcher never fires afterwards.
 * Ownership: loop_io_t, loop_timer_t and loop_task_t are allocated by the caller (usually embedded in its
 *   own structs) and must outlive their registration.
 */
#ifndef FL_CORE_LOOP_H
#define FL_CORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "core/err.h"

typedef struct loop loop_t;
typedef struct loop_io loop_io_t;
typedef struct loop_timer loop_timer_t;
typedef struct loop_task loop_task_t;

typedef void (*loop_io_fn)(loop_io_t *io, uint32_t events);
typedef void (*loop_timer_fn)(loop_timer_t *t);
typedef void (*loop_task_fn)(loop_task_t *task);

struct loop_io {
	int fd;
	uint32_t events; /* EPOLLIN | EPOLLOUT ... as registered */
	loop_io_fn cb;
	void *data;
};

struct loop_timer {
	int64_t due_ns;
	loop_timer_fn cb;
	void *data;
	size_t heap_idx; /* 0 = not armed; else index + 1 in the heap */
};

struct loop_task {
	loop_task_t *next;
	loop_task_fn cb;
	void *data;
};

err_t loop_new(loop_t **out);
void loop_free(loop_t *l);

err_t loop_io_add(loop_t *l, loop_io_t *io, uint32_t events);
err_t loop_io_mod(loop_t *l, loop_io_t *io, uint32_t events);
void loop_io_del(loop_t *l, loop_io_t *io);

/* (Re)arms t to fire after delay_ms. */
void loop_timer_start(loop_t *l, loop_timer_t *t, int64_t delay_ms);
void loop_timer_stop(loop_t *l, loop_timer_t *t);
static inline bool loop_timer_armed(const loop_timer_t *t)
{
	return t->heap_idx != 0;
}

/* Runs task->cb on the loop thread soon. Thread-safe. The task must not be posted again before it ran. */
void loop_post(loop_t *l, loop_task_t *task);

/* Runs until loop_stop(); returns after the current iteration. loop_stop is thread-safe. */
void loop_run(loop_t *l);
void loop_stop(loop_t *l);
/* One iteration (waiting at most timeout_ms), whether or not the loop was stopped: for draining. */
void loop_run_once(loop_t *l, int timeout_ms);
int64_t loop_now_ns(void);

#endif
