/*
 * worker.c -- the worker pool of a function: warm processes speaking NDJSON, or an HTTP target.
 *
 * Each pool thread owns at most one worker: a process (/bin/sh -c RUN in the app's directory, stdin and
 * stdout piped, stderr appended to the function's log) or a libcurl handle. A thread takes jobs from the
 * function's queue, runs them, posts them back to their trigger. Threads are started when a job waits and no
 * thread is idle (up to scale.max) and leave after scale.idle without work (down to scale.min): that is the
 * scaling with the backlog, and scale-to-zero when min is 0. A process is started lazily for a job (a cold
 * start) and killed on timeout, a protocol error or its thread's exit.
 *
 * The protocol (docs/functions.md): one request line {"id","function","attempt","events":[...]} and one reply
 * line {"id","status":"ok"|"error","error","failed":[i...],"emit":[...]}. Emits are produced and
 * acknowledged before the job is reported done, so an event never counts as processed before its effects
 * on the ledger are durable.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/thread.h"
#include "core/buf.h"
#include "core/log.h"
#include "runtime/rt_int.h"

extern char **environ;

#define REPLY_MAX (64u << 20) /* a reply line longer than this is a protocol error */
#define REQ_KEEP (8u << 20)   /* a request buffer up to this size is kept for the next job, not regrown */
#define PIPE_BYTES (1 << 20)  /* the stdin pipe's size: a batch goes in a few writes (Linux caps it) */

typedef struct {
	rt_fn_t *fn;
	pid_t pid;
	int in_fd, out_fd;
	buf_t rbuf;              /* bytes read from stdout not yet consumed */
	buf_t req;               /* the request being written, kept between jobs (see REQ_KEEP) */
	bool cold;               /* the next reply is the first of this process */
	int64_t spawned_ns;
	CURL *curl;
} worker_t;

static void worker_kill(worker_t *w, const char *why)
{
	if (w->pid > 0) {
		kill(-w->pid, SIGKILL);
		kill(w->pid, SIGKILL);
		int st;
		while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
			;
		if (why != NULL)
			rt_fn_log(w->fn, "worker %d stopped: %s", (int)w->pid, why);
	}
	if (w->in_fd >= 0)
		close(w->in_fd);
	if (w->out_fd >= 0)
		close(w->out_fd);
	w->pid = -1;
	w->in_fd = w->out_fd = -1;
	w->rbuf.len = 0;
}

/* The environment of a worker: ours, then the function's, then FACTLOG_FUNCTION and FACTLOG_STATE_DIR. */
static char **worker_env(const rt_fn_t *fn)
{
	const fn_def_t *d = fn->def;
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **envp = calloc(n + (size_t)d->nenv + 3, sizeof *envp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		bool overridden = false;
		const char *eq = strchr(environ[i], '=');
		size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		for (int j = 0; j < d->nenv && !overridden; j++)
			overridden = strncmp(d->env[j], environ[i], nl) == 0 && d->env[j][nl] == '=';
		if (!overridden && strncmp(environ[i], "FACTLOG_FUNCTION=", 17) != 0 &&
		    strncmp(environ[i], "FACTLOG_STATE_DIR=", 18) != 0)
			envp[k++] = environ[i];
	}
	for (int j = 0; j < d->nenv; j++)
		envp[k++] = d->env[j];
	static __thread char fnvar[96];
	snprintf(fnvar, sizeof fnvar, "FACTLOG_FUNCTION=%s", d->name);
	envp[k++] = fnvar;
	envp[k++] = fn->state_var;
	envp[k] = NULL;
	return envp;
}

static int worker_spawn(worker_t *w)
{
	const fn_def_t *d = w->fn->def;
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) != 0)
		return -errno;
	if (pipe2(out, O_CLOEXEC) != 0) {
		int e = errno;
		close(in[0]);
		close(in[1]);
		return -e;
	}
	int logfd = open(w->fn->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	if (logfd >= 0)
		posix_spawn_file_actions_adddup2(&fa, logfd, 2);
	posix_spawn_file_actions_addchdir_np(&fa, w->fn->app->app->dir);
	/* Its own process group, so a timeout kills the shell and whatever it started. Default signals. */
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	char **envp = worker_env(w->fn);
	char *argv[] = { (char *)"sh", (char *)"-c", d->run, NULL };
	pid_t pid;
	int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, envp);
	free(envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(in[0]);
	close(out[1]);
	if (logfd >= 0)
		close(logfd);
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		return -rc;
	}
	fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
	(void)fcntl(in[1], F_SETPIPE_SZ, PIPE_BYTES); /* best effort: fewer wake-ups per batch */
	w->pid = pid;
	w->in_fd = in[1];
	w->out_fd = out[0];
	w->cold = true;
	w->spawned_ns = rt_now_ns();
	atomic_fetch_add(&w->fn->stats.cold_starts, 1);
	rt_fn_log(w->fn, "worker %d started (cold start)", (int)pid);
	return 0;
}

/* The request line of a job: {"id":...,"function":...,"attempt":N,"events":[...]}\n */
static void job_request(const rt_job_t *job, buf_t *b)
{
	char head[256];
	int attempt = 1;
	for (int i = 0; i < job->n; i++)
		if (job->evs[i]->attempts + 1 > attempt)
			attempt = job->evs[i]->attempts + 1;
	int hl = snprintf(head, sizeof head, "{\"id\":\"%s-%d-%" PRIu64 "\",\"function\":\"%s\",\"attempt\":%d,\"events\":[",
			  job->tr->fn->def->name, job->tr->index, job->id, job->tr->fn->def->name, attempt);
	buf_append(b, head, (size_t)hl);
	for (int i = 0; i < job->n; i++) {
		if (i > 0)
			buf_append(b, ",", 1);
		rt_ev_json(job->tr->def->stream, job->evs[i], b);
	}
	buf_append(b, "]}\n", 3);
}

static void job_fail(rt_job_t *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_fail(rt_job_t *job, const char *fmt, ...)
{
	va_list ap;
	char msg[512];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	job->status = 1;
	free(job->error);
	job->error = strdup(msg);
}

/* Writes the request and reads one reply line, both bounded by the function's timeout. Returns the line
 * (NUL-terminated, in w->rbuf, length *len) or NULL with the job failed. */
static char *worker_exchange(worker_t *w, rt_job_t *job, const buf_t *req, size_t *len)
{
	int64_t deadline = rt_now_ns() + w->fn->def->timeout_ms * 1000000;
	size_t sent = 0;
	for (;;) {
		uint8_t *nl = w->rbuf.len ? memchr(w->rbuf.data, '\n', w->rbuf.len) : NULL;
		if (nl != NULL && sent == req->len) {
			*nl = 0;
			*len = (size_t)(nl - w->rbuf.data);
			return (char *)w->rbuf.data;
		}
		int64_t left = (deadline - rt_now_ns()) / 1000000;
		if (left <= 0) {
			atomic_fetch_add(&w->fn->stats.timeouts, 1);
			job_fail(job, "timed out after %" PRId64 " ms", w->fn->def->timeout_ms);
			worker_kill(w, "invocation timed out");
			return NULL;
		}
		struct pollfd p[2] = { { .fd = w->out_fd, .events = POLLIN },
				       { .fd = sent < req->len ? w->in_fd : -1, .events = POLLOUT } };
		int rc = poll(p, 2, (int)(left > 1000 ? 1000 : left));
		if (rc < 0 && errno != EINTR) {
			job_fail(job, "poll: %s", strerror(errno));
			worker_kill(w, "poll failed");
			return NULL;
		}
		if (p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			ssize_t k = write(w->in_fd, req->data + sent, req->len - sent);
			if (k > 0) {
				sent += (size_t)k;
			} else if (k < 0 && errno != EAGAIN && errno != EINTR) {
				atomic_fetch_add(&w->fn->stats.crashes, 1);
				job_fail(job, "worker closed its stdin (%s)", strerror(errno));
				worker_kill(w, "stdin closed");
				return NULL;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			buf_reserve(&w->rbuf, 65536);
			ssize_t k = read(w->out_fd, w->rbuf.data + w->rbuf.len, w->rbuf.cap - w->rbuf.len);
			if (k > 0) {
				w->rbuf.len += (size_t)k;
				if (w->rbuf.len > REPLY_MAX) {
					job_fail(job, "reply longer than %u bytes", REPLY_MAX);
					worker_kill(w, "reply too long");
					return NULL;
				}
			} else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
				int st = 0;
				pid_t pid = w->pid;
				kill(-pid, SIGKILL);
				while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
					;
				w->pid = -1;
				atomic_fetch_add(&w->fn->stats.crashes, 1);
				if (WIFSIGNALED(st))
					job_fail(job, "worker %d was killed by signal %d", (int)pid, WTERMSIG(st));
				else
					job_fail(job, "worker %d exited with status %d", (int)pid, WEXITSTATUS(st));
				rt_fn_log(w->fn, "%s", job->error);
				worker_kill(w, NULL);
				return NULL;
			}
		}
	}
}

/* Applies a reply object (from a worker or an HTTP target's body) to the job. */
static void job_apply_reply(worker_t *w, rt_job_t *job, json_t *reply)
{
	json_t *status_j = json_object_get(reply, "status");
	const char *status = json_string_value(status_j);
	const char *error = json_string_value(json_object_get(reply, "error"));
	json_t *failed = json_object_get(reply, "failed");
	/* Strict about shapes: a reply that says something we cannot read must not count as success. */
	if (status_j != NULL && !json_is_null(status_j) && status == NULL) {
		job_fail(job, "reply: status must be a string");
		return;
	}
	if (failed != NULL && !json_is_null(failed) && !json_is_array(failed)) {
		job_fail(job, "reply: failed must be an array of indexes or event ids");
		return;
	}
	if (status != NULL && strcmp(status, "ok") != 0 && strcmp(status, "error") != 0) {
		job_fail(job, "reply: status must be \"ok\" or \"error\", not \"%s\"", status);
		return;
	}
	if (status != NULL && strcmp(status, "error") == 0 && !(json_is_array(failed) && json_array_size(failed))) {
		job_fail(job, "%s", error ? error : "the function reported an error");
		return;
	}
	/* Emits first: an event is done only once what it caused is on the ledger. */
	json_t *emit = json_object_get(reply, "emit");
	if (emit != NULL && !json_is_array(emit)) {
		job_fail(job, "reply: emit must be an array");
		return;
	}
	if (json_array_size(emit) > 0) {
		rt_emit_wait_t ew = { .dr = { JOB_INVOKE } };
		pthread_mutex_init(&ew.mu, NULL);
		pthread_cond_init(&ew.cond, NULL);
		size_t i;
		json_t *e;
		const char *bad = NULL;
		json_array_foreach(emit, i, e) {
			json_t *cause_ix = json_object_get(e, "cause");
			json_int_t ci = json_is_integer(cause_ix) ? json_integer_value(cause_ix) : 0;
			if (!json_is_object(e)) {
				bad = "an emit must be a JSON object";
				break;
			}
			if ((cause_ix != NULL && !json_is_integer(cause_ix)) || ci < 0 || ci >= job->n) {
				bad = "emit: cause is not an index of the batch";
				break;
			}
			json_t *cause = rt_ev_ce(job->tr->def->stream, job->evs[ci]);
			bad = rt_produce_emit(w->fn, e, cause, &ew);
			json_decref(cause);
			if (bad != NULL)
				break;
		}
		pthread_mutex_lock(&ew.mu);
		while (ew.pending > 0)
			pthread_cond_wait(&ew.cond, &ew.mu);
		pthread_mutex_unlock(&ew.mu);
		pthread_mutex_destroy(&ew.mu);
		pthread_cond_destroy(&ew.cond);
		if (bad != NULL) {
			job_fail(job, "emit[%zu]: %s", i, bad);
			return;
		}
		if (ew.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			job->purged = ew.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || ew.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
			job_fail(job, "emit: %s", rd_kafka_err2str(ew.err));
			return;
		}
		atomic_fetch_add(&w->fn->stats.emitted, (long long)json_array_size(emit));
	}
	if (json_is_array(failed) && json_array_size(failed) > 0) {
		job->failed = calloc(json_array_size(failed), sizeof *job->failed);
		size_t i;
		json_t *f;
		json_array_foreach(failed, i, f) {
			int ix = -1;
			if (json_is_integer(f)) {
				json_int_t v = json_integer_value(f);
				ix = v >= 0 && v < job->n ? (int)v : -1;
			} else if (json_is_string(f)) { /* an event id, as Lambda's itemIdentifier */
				for (int k = 0; k < job->n && ix < 0; k++) {
					json_t *ce = rt_ev_ce(job->tr->def->stream, job->evs[k]);
					const char *id = json_string_value(json_object_get(ce, "id"));
					if (id != NULL && strcmp(id, json_string_value(f)) == 0)
						ix = k;
					json_decref(ce);
				}
			}
			if (ix < 0 || ix >= job->n) {
				free(job->failed);
				job->failed = NULL;
				job_fail(job, "reply: failed[%zu] is not an index or id of the batch", i);
				return;
			}
			job->failed[job->nfailed++] = ix;
		}
		job->status = 2;
		free(job->error);
		job->error = strndup(error ? error : "the function reported these events as failed", 1024);
	}
}

static void run_process(worker_t *w, rt_job_t *job)
{
	if (w->pid < 0) {
		int rc = worker_spawn(w);
		if (rc != 0) {
			job_fail(job, "cannot start `%s`: %s", w->fn->def->run, strerror(-rc));
			rt_fn_log(w->fn, "%s", job->error);
			return;
		}
	}
	w->req.len = 0;
	job_request(job, &w->req);
	size_t len = 0;
	char *line = worker_exchange(w, job, &w->req, &len);
	if (w->req.cap > REQ_KEEP)
		buf_free(&w->req);
	if (line == NULL)
		return;
	if (w->cold) {
		w->cold = false;
		atomic_store(&w->fn->stats.last_cold_start_ms, (rt_now_ns() - w->spawned_ns) / 1000000);
	}
	json_error_t je;
	json_t *reply = json_loadb(line, len, 0, &je);
	size_t consumed = len + 1;
	memmove(w->rbuf.data, w->rbuf.data + consumed, w->rbuf.len - consumed);
	w->rbuf.len -= consumed;
	if (!json_is_object(reply)) {
		job_fail(job, "reply is not a JSON object: %s", reply ? "wrong type" : je.text);
		json_decref(reply);
		worker_kill(w, "protocol error");
		return;
	}
	char want[128];
	snprintf(want, sizeof want, "%s-%d-%" PRIu64, job->tr->fn->def->name, job->tr->index, job->id);
	const char *id = json_string_value(json_object_get(reply, "id"));
	if (id == NULL || strcmp(id, want) != 0) {
		job_fail(job, "reply id %s does not match request id %s", id ? id : "(none)", want);
		json_decref(reply);
		worker_kill(w, "protocol error");
		return;
	}
	job_apply_reply(w, job, reply);
	json_decref(reply);
}

static size_t curl_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	buf_t *b = ud;
	if (b->len + size * nmemb > REPLY_MAX)
		return 0;
	buf_append(b, ptr, size * nmemb);
	return size * nmemb;
}

static void run_http(worker_t *w, rt_job_t *job)
{
	if (w->curl == NULL) {
		w->curl = curl_easy_init();
		atomic_fetch_add(&w->fn->stats.cold_starts, 1);
	}
	buf_t req = { 0 }, resp = { 0 };
	buf_append(&req, "[", 1);
	for (int i = 0; i < job->n; i++) {
		if (i > 0)
			buf_append(&req, ",", 1);
		rt_ev_json(job->tr->def->stream, job->evs[i], &req);
	}
	buf_append(&req, "]", 1);
	char idh[200];
	snprintf(idh, sizeof idh, "factlog-invocation-id: %s-%d-%" PRIu64, job->tr->fn->def->name, job->tr->index,
		 job->id);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/cloudevents-batch+json");
	h = curl_slist_append(h, idh);
	h = curl_slist_append(h, "Expect:");
	CURL *c = w->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, w->fn->def->http);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)req.data);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req.len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->fn->def->timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	CURLcode rc = curl_easy_perform(c);
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	buf_free(&req);
	if (rc != CURLE_OK) {
		if (rc == CURLE_OPERATION_TIMEDOUT)
			atomic_fetch_add(&w->fn->stats.timeouts, 1);
		job_fail(job, "POST %s: %s", w->fn->def->http, curl_easy_strerror(rc));
	} else if (code < 200 || code > 299) {
		job_fail(job, "POST %s: HTTP %ld: %.*s", w->fn->def->http, code, (int)(resp.len < 200 ? resp.len : 200),
			 resp.len ? (const char *)resp.data : "");
	} else if (resp.len > 0) {
		json_t *reply = json_loadb((const char *)resp.data, resp.len, 0, NULL);
		if (json_is_object(reply))
			job_apply_reply(w, job, reply);
		json_decref(reply);
	}
	buf_free(&resp);
}

static void run_job(worker_t *w, rt_job_t *job)
{
	job->started_ns = rt_now_ns();
	atomic_fetch_add(&w->fn->stats.invocations, 1);
	if (w->fn->def->http != NULL)
		run_http(w, job);
	else
		run_process(w, job);
	job->ended_ns = rt_now_ns();
	if (job->status != 0)
		atomic_fetch_add(&w->fn->stats.errors, 1);
	atomic_fetch_add(&w->fn->stats.invoke_ns_total, job->ended_ns - job->started_ns);
	pthread_mutex_lock(&w->fn->mu);
	w->fn->lat_ms[w->fn->nlat++ % 256u] = (job->ended_ns - job->started_ns) / 1000000;
	pthread_mutex_unlock(&w->fn->mu);
}

/* A batch that succeeded as a whole is done: nothing reads its records again, so they are destroyed here, in
 * parallel, rather than by the trigger's one consumer thread when it frees the events (a fifth of its time). */
static void release_records(rt_job_t *job)
{
	if (job->status != 0)
		return;
	for (int i = 0; i < job->n; i++) {
		rd_kafka_message_destroy(job->evs[i]->msg);
		job->evs[i]->msg = NULL;
	}
}

static void *worker_main(void *arg)
{
	worker_t w = { .fn = arg, .pid = -1, .in_fd = -1, .out_fd = -1 };
	rt_fn_t *fn = w.fn;
	fl_thread_name("fl-fn-worker");
	pthread_mutex_lock(&fn->mu);
	bool warm = fn->def->run != NULL && fn->nworkers <= fn->def->min_workers;
	pthread_mutex_unlock(&fn->mu);
	if (warm && worker_spawn(&w) != 0) /* scale.min: warm before the first event */
		rt_fn_log(fn, "cannot start `%s`", fn->def->run);
	w.cold = false; /* a warm start is not timed: its first reply waits for the first event */
	pthread_mutex_lock(&fn->mu);
	for (;;) {
		if (fn->q_head != NULL) {
			rt_job_t *job = fn->q_head;
			fn->q_head = job->next;
			if (fn->q_head == NULL)
				fn->q_tail = NULL;
			fn->queued--;
			fn->nbusy++;
			pthread_mutex_unlock(&fn->mu);
			run_job(&w, job);
			release_records(job);
			rt_trigger_post(job);
			pthread_mutex_lock(&fn->mu);
			fn->nbusy--;
			continue;
		}
		if (fn->stopping)
			break;
		fn->nidle++;
		int rc = 0;
		if (fn->nworkers > fn->def->min_workers) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns = ts.tv_nsec + (fn->def->idle_ms % 1000) * 1000000;
			ts.tv_sec += (time_t)(fn->def->idle_ms / 1000 + ns / 1000000000);
			ts.tv_nsec = (long)(ns % 1000000000);
			rc = pthread_cond_timedwait(&fn->cond, &fn->mu, &ts);
		} else {
			pthread_cond_wait(&fn->cond, &fn->mu);
		}
		fn->nidle--;
		if (rc == ETIMEDOUT && fn->q_head == NULL && fn->nworkers > fn->def->min_workers)
			break; /* scale down */
	}
	bool stopping = fn->stopping;
	pthread_mutex_unlock(&fn->mu);
	worker_kill(&w, stopping ? NULL : "idle");
	buf_free(&w.rbuf);
	buf_free(&w.req);
	if (w.curl != NULL)
		curl_easy_cleanup(w.curl);
	/* last: once counted out, fn may be freed by rt_pool_stop's caller */
	pthread_mutex_lock(&fn->mu);
	fn->nworkers--;
	pthread_cond_broadcast(&fn->exited);
	pthread_mutex_unlock(&fn->mu);
	return NULL;
}

/* Starts a pool thread; called with fn->mu held. */
static void pool_grow(rt_fn_t *fn)
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, worker_main, fn) == 0)
		fn->nworkers++;
	else
		log_error("function %s: cannot start a worker thread", fn->def->name);
	pthread_attr_destroy(&a);
}

void rt_pool_submit(rt_fn_t *fn, rt_job_t *job)
{
	job->next = NULL;
	pthread_mutex_lock(&fn->mu);
	if (fn->q_tail)
		fn->q_tail->next = job;
	else
		fn->q_head = job;
	fn->q_tail = job;
	fn->queued++;
	if (fn->queued > fn->nidle && fn->nworkers < fn->def->max_workers)
		pool_grow(fn);
	else
		pthread_cond_signal(&fn->cond);
	pthread_mutex_unlock(&fn->mu);
}

bool rt_pool_has_room(rt_fn_t *fn)
{
	pthread_mutex_lock(&fn->mu);
	int free_workers = fn->def->max_workers - fn->nbusy;
	bool room = fn->queued < (free_workers > 1 ? free_workers : 1);
	pthread_mutex_unlock(&fn->mu);
	return room;
}

void rt_pool_start_min(rt_fn_t *fn)
{
	pthread_mutex_lock(&fn->mu);
	while (fn->nworkers < fn->def->min_workers)
		pool_grow(fn);
	pthread_mutex_unlock(&fn->mu);
}

int rt_pool_cancel(rt_fn_t *fn, rt_trigger_t *tr, bool only_unassigned)
{
	rt_job_t *mine = NULL, **link = &mine;
	int n = 0;
	pthread_mutex_lock(&fn->mu);
	rt_job_t **pp = &fn->q_head;
	fn->q_tail = NULL;
	while (*pp != NULL) {
		rt_job_t *j = *pp;
		if (j->tr == tr && (!only_unassigned || !j->part->assigned)) {
			*pp = j->next;
			fn->queued--;
			j->next = NULL;
			*link = j;
			link = &j->next;
			n++;
			continue;
		}
		fn->q_tail = j;
		pp = &j->next;
	}
	pthread_mutex_unlock(&fn->mu);
	while (mine != NULL) { /* posted outside fn->mu: rt_trigger_post takes tr->mu */
		rt_job_t *j = mine;
		mine = j->next;
		job_fail(j, "cancelled: the trigger stopped before a worker took it");
		rt_trigger_post(j);
	}
	return n;
}

void rt_pool_stop(rt_fn_t *fn)
{
	pthread_mutex_lock(&fn->mu);
	fn->stopping = true;
	pthread_cond_broadcast(&fn->cond);
	while (fn->nworkers > 0)
		pthread_cond_wait(&fn->exited, &fn->mu);
	pthread_mutex_unlock(&fn->mu);
}
