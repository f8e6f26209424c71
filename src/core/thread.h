/*
 * thread.h -- names for factlog's threads, so top -H, perf and gdb tell them apart (a thread otherwise
 * inherits the name of the thread that created it: a trigger started by an HTTP deploy showed up as
 * "MHD-worker"). Names are at most 15 bytes (the kernel's limit); longer ones are cut.
 */
#ifndef FL_CORE_THREAD_H
#define FL_CORE_THREAD_H

#include <pthread.h>
#include <string.h>

static inline void fl_thread_name(const char *name)
{
	char n[16];
	size_t len = strlen(name);
	if (len > 15)
		len = 15;
	memcpy(n, name, len);
	n[len] = 0;
	(void)pthread_setname_np(pthread_self(), n);
}

#endif
