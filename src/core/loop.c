/* loop.c -- the epoll event loop. See loop.h. */
#include "core/loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/compat.h"
#include "core/fl_assert.h"

#define EVENTS_MAX 128

struct loop {
	int epfd, evfd;
	loop_io_t wake_io;
	loop_timer_t **heap;
	size_t nheap, capheap;
	pthread_mutex_t mu; /* guards tasks */
	loop_task_t *tasks_head, *tasks_tail;
	atomic_bool stopping;
	atomic_bool wake_pending;
	atomic_bool running; /* inside loop_run_once */
	pthread_t thread;    /* the thread in loop_run_once, valid while running */
};

int64_t loop_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_wake(loop_io_t *io, uint32_t events)
{
	(void)events;
	uint64_t v;
	ssize_t n = read(io->fd, &v, sizeof v);
	(void)n;
}

err_t loop_new(loop_t **out)
{
	loop_t *l = calloc(1, sizeof *l);
	ASSERT(l != NULL);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&l->mu, NULL);
	if (l->epfd < 0 || l->evfd < 0) {
		err_t rc = ERR_SYS(errno);
		loop_free(l);
		return rc;
	}
	l->wake_io.fd = l->evfd;
	l->wake_io.cb = on_wake;
	err_t rc = loop_io_add(l, &l->wake_io, EPOLLIN);
	if (rc != OK) {
		loop_free(l);
		return rc;
	}
	*out = l;
	return OK;
}

void loop_free(loop_t *l)
{
	if (l == NULL)
		return;
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->evfd >= 0)
		close(l->evfd);
	free(l->heap);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

err_t loop_io_add(loop_t *l, loop_io_t *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? ERR_SYS(errno) : OK;
}

err_t loop_io_mod(loop_t *l, loop_io_t *io, uint32_t events)
{
	if (io->events == events)
		return OK;
	struct epoll_event ev = { .events = events, .data.ptr = io };
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? ERR_SYS(errno) : OK;
}

void loop_io_del(loop_t *l, loop_io_t *io)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->events = 0;
}

/* --- timers: a binary min-heap on due_ns --- */

static void heap_swap(loop_t *l, size_t a, size_t b)
{
	loop_timer_t *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a + 1;
	l->heap[b]->heap_idx = b + 1;
}

static void heap_up(loop_t *l, size_t i)
{
	while (i > 0 && l->heap[(i - 1) / 2]->due_ns > l->heap[i]->due_ns) {
		heap_swap(l, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(loop_t *l, size_t i)
{
	for (;;) {
		size_t m = i, a = 2 * i + 1, b = a + 1;
		if (a < l->nheap && l->heap[a]->due_ns < l->heap[m]->due_ns)
			m = a;
		if (b < l->nheap && l->heap[b]->due_ns < l->heap[m]->due_ns)
			m = b;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_stop(loop_t *l, loop_timer_t *t)
{
	if (t->heap_idx == 0)
		return;
	size_t i = t->heap_idx - 1;
	ASSERT(i < l->nheap && l->heap[i] == t);
	l->nheap--;
	if (i != l->nheap) {
		l->heap[i] = l->heap[l->nheap];
		l->heap[i]->heap_idx = i + 1;
		heap_down(l, i);
		heap_up(l, i);
	}
	t->heap_idx = 0;
}

void loop_timer_start(loop_t *l, loop_timer_t *t, int64_t delay_ms)
{
	loop_timer_stop(l, t);
	t->due_ns = loop_now_ns() + delay_ms * 1000000;
	if (l->nheap == l->capheap) {
		l->capheap = l->capheap ? l->capheap * 2 : 64;
		l->heap = realloc(l->heap, l->capheap * sizeof *l->heap);
		ASSERT(l->heap != NULL);
	}
	l->heap[l->nheap] = t;
	t->heap_idx = ++l->nheap;
	heap_up(l, l->nheap - 1);
}

static void run_timers(loop_t *l)
{
	int64_t now = loop_now_ns();
	for (int guard = 0; guard < 100000 && l->nheap > 0 && l->heap[0]->due_ns <= now; guard++) {
		loop_timer_t *t = l->heap[0];
		loop_timer_stop(l, t);
		t->cb(t);
	}
}

/* --- tasks --- */

void loop_post(loop_t *l, loop_task_t *task)
{
	task->next = NULL;
	pthread_mutex_lock(&l->mu);
	if (l->tasks_tail)
		l->tasks_tail->next = task;
	else
		l->tasks_head = task;
	l->tasks_tail = task;
	pthread_mutex_unlock(&l->mu);
	/* From the loop's own thread no wake-up is needed: tasks run before it waits again. */
	if (atomic_load(&l->running) && pthread_equal(l->thread, pthread_self()))
		return;
	if (!atomic_exchange(&l->wake_pending, true)) {
		uint64_t one = 1;
		ssize_t n = write(l->evfd, &one, sizeof one);
		(void)n;
	}
}

static void run_tasks(loop_t *l)
{
	atomic_store(&l->wake_pending, false);
	pthread_mutex_lock(&l->mu);
	loop_task_t *t = l->tasks_head;
	l->tasks_head = l->tasks_tail = NULL;
	pthread_mutex_unlock(&l->mu);
	while (t != NULL) {
		loop_task_t *next = t->next;
		t->next = NULL;
		t->cb(t);
		t = next;
	}
}

void loop_stop(loop_t *l)
{
	atomic_store(&l->stopping, true);
	uint64_t one = 1;
	ssize_t n = write(l->evfd, &one, sizeof one);
	(void)n;
}

void loop_run_once(loop_t *l, int timeout_ms)
{
	struct epoll_event evs[EVENTS_MAX];
	l->thread = pthread_self();
	atomic_store(&l->running, true);
	if (l->nheap > 0) {
		int64_t d = (l->heap[0]->due_ns - loop_now_ns() + 999999) / 1000000;
		d = d < 0 ? 0 : d > 60000 ? 60000 : d;
		if (timeout_ms < 0 || d < timeout_ms)
			timeout_ms = (int)d;
	}
	pthread_mutex_lock(&l->mu);
	bool queued = l->tasks_head != NULL; /* posted from this thread since the last run */
	pthread_mutex_unlock(&l->mu);
	if (queued)
		timeout_ms = 0;
	int n = epoll_wait(l->epfd, evs, EVENTS_MAX, timeout_ms);
	for (int i = 0; i < n; i++) {
		loop_io_t *io = evs[i].data.ptr;
		io->cb(io, evs[i].events);
	}
	run_tasks(l);
	run_timers(l);
	run_tasks(l); /* what the timers posted */
	atomic_store(&l->running, false);
}

void loop_run(loop_t *l)
{
	while (!atomic_load(&l->stopping))
		loop_run_once(l, -1);
	run_tasks(l);
}
