/*
 * handler.h -- a function handler process for the benchmarks that stand in for the runtime's worker
 * (bench/fn_ceiling.c, bench/replay_direct.c): started as the runtime starts one (stdin and stdout pipes,
 * stdin's pipe 1 MiB), sent one request line at a time, each answered before the next; and the CPU time
 * both report (theirs and their handlers').
 * Header-only (static functions): each benchmark is one file plus this.
 */
#ifndef FL_BENCH_HANDLER_H
#define FL_BENCH_HANDLER_H

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"

typedef struct {
	pid_t pid;
	int in, out; /* its stdin (we write), its stdout (we read) */
	buf_t reply;
} handler_t;

/* CPU seconds (user + system) of RUSAGE_SELF or RUSAGE_CHILDREN (the handlers, once waited for). */
static double bench_cpu_seconds(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Starts the executable at path; exits the benchmark with a message when it cannot. */
static void handler_start(handler_t *h, char *path)
{
	extern char **environ;
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
		perror("bench: pipe");
		exit(1);
	}
	(void)fcntl(in[1], F_SETPIPE_SZ, 1 << 20); /* as the runtime's worker */
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	char *argv[] = { path, NULL };
	if (posix_spawn(&h->pid, path, &fa, NULL, argv, environ) != 0) {
		fprintf(stderr, "bench: cannot start %s\n", path);
		exit(1);
	}
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	h->in = in[1];
	h->out = out[0];
	h->reply = (buf_t){ 0 };
}

/* Sends one request line (req ends with '\n') and reads the reply line; exits unless it says "ok". */
static void handler_call(handler_t *h, const buf_t *req)
{
	for (size_t off = 0; off < req->len;) {
		ssize_t k = write(h->in, req->data + off, req->len - off);
		if (k <= 0) {
			fprintf(stderr, "bench: the handler closed its stdin\n");
			exit(1);
		}
		off += (size_t)k;
	}
	h->reply.len = 0;
	while (h->reply.len == 0 || memchr(h->reply.data, '\n', h->reply.len) == NULL) {
		buf_reserve(&h->reply, 4096);
		ssize_t k = read(h->out, h->reply.data + h->reply.len, h->reply.cap - h->reply.len);
		if (k <= 0) {
			fprintf(stderr, "bench: the handler exited without a reply\n");
			exit(1);
		}
		h->reply.len += (size_t)k;
	}
	if (memmem(h->reply.data, h->reply.len, "\"ok\"", 4) == NULL) {
		fprintf(stderr, "bench: the handler did not answer ok: %.*s\n", (int)h->reply.len, (char *)h->reply.data);
		exit(1);
	}
}

/* Closes its stdin and waits for it to exit. */
static void handler_stop(handler_t *h)
{
	int st;
	close(h->in);
	waitpid(h->pid, &st, 0);
	close(h->out);
	buf_free(&h->reply);
}

#endif
