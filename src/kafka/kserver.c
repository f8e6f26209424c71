/*
 * kserver.c -- listeners, connections, request framing, ordered responses, parking. See kafka.h.
 *
 * A connection's life: accept -> read frames -> each complete frame becomes a kreq_t appended to the
 * connection's queue and dispatched at once -> handlers complete synchronously or later (fsync, data) ->
 * the queue's head is written (memory with send, file ranges with sendfile) as soon as it is ready ->
 * freed. Reading pauses while max_inflight_requests/bytes are outstanding (backpressure). A closing
 * connection is freed when its last pending request completes, never earlier, because flusher callbacks
 * still point at its requests.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/thread.h"
#include "core/clock.h"
#include "core/compat.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "kafka/kafka_int.h"

#define READ_CHUNK (256 * 1024)
#define STEAL_MIN (64 * 1024) /* a frame at least this big, alone in the input buffer, is not copied out */

void kafka_opts_default(kafka_opts_t *o)
{
	memset(o, 0, sizeof *o);
	o->listen_host = "127.0.0.1";
	o->listen_port = 9092;
	o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (o->threads < 1)
		o->threads = 1;
	o->default_partitions = 1;
	o->max_request_bytes = 100 << 20;
	o->max_inflight_bytes = 64 << 20;
	o->max_inflight_requests = 64;
	o->max_connections = 10000;
	o->idle_timeout_ms = 600000;
	o->request_timeout_ms = 30000;
	o->group_initial_delay_ms = 500;
	o->group_max_session_ms = 1800000;
}

/* --- requests --- */

static void req_free(kreq_t *req)
{
	if (req->ctx_free)
		req->ctx_free(req);
	for (int i = 0; i < req->resp.nfiles; i++)
		log_range_release(&req->resp.files[i].range);
	free(req->resp.files);
	buf_free(&req->resp.mem);
	free(req->frame_alloc);
	free(req);
}

void kresp_begin(kreq_t *req)
{
	buf_t *b = &req->resp.mem;
	b->len = 0;
	kw_i32(b, 0); /* size, patched by kreq_finish */
	kw_i32(b, req->correlation_id);
}

void kresp_add_range(kreq_t *req, log_range_t *r)
{
	kresp_t *resp = &req->resp;
	if (resp->nfiles == resp->capfiles) {
		resp->capfiles = resp->capfiles ? resp->capfiles * 2 : 8;
		resp->files = realloc(resp->files, (size_t)resp->capfiles * sizeof *resp->files);
		ASSERT(resp->files != NULL);
	}
	resp->files[resp->nfiles].at = resp->mem.len;
	resp->files[resp->nfiles].range = *r;
	resp->nfiles++;
	r->seg = NULL; /* the response owns the reference now */
}

static void conn_post_kick(kconn_t *c);

void kreq_finish(kreq_t *req)
{
	kresp_t *resp = &req->resp;
	resp->total = (int64_t)resp->mem.len;
	for (int i = 0; i < resp->nfiles; i++)
		resp->total += resp->files[i].range.len;
	if (!req->no_response) {
		ASSERT(resp->mem.len >= 8);
		be32_store(resp->mem.data, (uint32_t)(resp->total - 4));
	}
	req->ready = true;
	conn_post_kick(req->conn);
}

void kreq_async_done(kreq_t *req, void (*done)(kreq_t *req))
{
	ASSERT(req->pending > 0);
	if (--req->pending > 0)
		return;
	if (req->conn->closing) {
		req->ready = true;
		conn_post_kick(req->conn);
		return;
	}
	done(req);
}

static void conn_close(kconn_t *c, const char *why);

void kreq_malformed(kreq_t *req)
{
	char why[80];
	snprintf(why, sizeof why, "malformed request (api key %d v%d)", req->api_key, req->api_version);
	req->no_response = true;
	req->ready = true;
	conn_close(req->conn, why);
}

/* --- parking --- */

static void park_timeout(loop_timer_t *t)
{
	kreq_t *req = t->data;
	kreq_unpark(req);
	req->retry(req, true);
}

void kreq_park(kreq_t *req, int64_t timeout_ms, void (*retry)(kreq_t *req, bool final))
{
	req->retry = retry;
	kworker_t *w = req->conn->w;
	if (!req->parked) {
		req->parked = true;
		req->park_prev = NULL;
		req->park_next = w->parked;
		if (w->parked)
			w->parked->park_prev = req;
		w->parked = req;
		/* Counted before one more look at the data (posted below): a flush that this look misses
		 * advanced the high watermark after it, so that flush's notify sees the count and wakes us. */
		atomic_fetch_add(&w->nparked, 1);
		if (!atomic_exchange(&w->data_posted, true))
			loop_post(w->loop, &w->data_task);
	}
	req->timer.cb = park_timeout;
	req->timer.data = req;
	loop_timer_start(w->loop, &req->timer, timeout_ms);
}

void kreq_unpark(kreq_t *req)
{
	kworker_t *w = req->conn->w;
	loop_timer_stop(w->loop, &req->timer);
	if (!req->parked)
		return;
	if (req->park_prev)
		req->park_prev->park_next = req->park_next;
	else
		w->parked = req->park_next;
	if (req->park_next)
		req->park_next->park_prev = req->park_prev;
	req->parked = false;
	req->park_next = req->park_prev = NULL;
	atomic_fetch_sub(&w->nparked, 1);
}

static void on_data_task(loop_task_t *t);

err_t kworker_init(kworker_t *w, kafka_server_t *s)
{
	w->srv = s;
	w->data_task.cb = on_data_task;
	w->data_task.data = w;
	atomic_init(&w->nparked, 0);
	return loop_new(&w->loop);
}

static void on_data_task(loop_task_t *t)
{
	kworker_t *w = t->data;
	atomic_store(&w->data_posted, false);
	/* Each parked request looks again; one that can answer unparks itself. */
	kreq_t *req = w->parked;
	for (int guard = 0; req != NULL && guard < 1000000; guard++) {
		kreq_t *next = req->park_next;
		req->retry(req, false);
		req = next;
	}
}

void kafka_server_notify_data(kafka_server_t *s)
{
	for (int i = 0; i < s->nworkers; i++) {
		kworker_t *w = &s->workers[i];
		/* A loop with no parked fetch has nothing to look at: waking it on every flush cost two context
		 * switches per loop per fsync. */
		if (atomic_load(&w->nparked) > 0 && !atomic_exchange(&w->data_posted, true))
			loop_post(w->loop, &w->data_task);
	}
}

/* --- connections --- */

static void conn_close(kconn_t *c, const char *why)
{
	if (c->closing)
		return;
	if (why != NULL)
		log_info("kafka: closing connection from %s: %s", c->peer, why);
	c->closing = true;
	loop_io_del(c->w->loop, &c->io);
	loop_timer_stop(c->w->loop, &c->idle_timer);
	loop_timer_stop(c->w->loop, &c->partial_timer);
	for (kreq_t *r = c->head; r != NULL; r = r->next)
		if (r->parked) {
			kreq_unpark(r);
			r->ready = true;
		}
	conn_post_kick(c);
}

/* Frees a closing connection once no request waits for an async completion (from the kick task). */
static void conn_maybe_free(kconn_t *c)
{
	if (!c->closing || c->kick_posted)
		return;
	for (kreq_t *r = c->head; r != NULL; r = r->next)
		if (r->pending > 0)
			return;
	while (c->head) {
		kreq_t *r = c->head;
		c->head = r->next;
		req_free(r);
	}
	kworker_t *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->io.fd);
	buf_free(&c->in);
	atomic_fetch_sub(&w->srv->nconns, 1);
	atomic_fetch_sub(&storage_stats(w->srv->st)->kafka_connections, 1);
	free(c);
}

static void conn_update_events(kconn_t *c)
{
	uint32_t ev = 0;
	if (!c->reading_paused)
		ev |= EPOLLIN;
	if (c->head && c->head->ready && !c->head->no_response)
		ev |= EPOLLOUT;
	loop_io_mod(c->w->loop, &c->io, ev);
}

static void pop_head(kconn_t *c)
{
	kreq_t *r = c->head;
	c->head = r->next;
	if (c->head == NULL)
		c->tail = NULL;
	c->nreqs--;
	c->inflight_bytes -= (int64_t)r->frame_len;
	c->send_mem = 0;
	c->send_file = 0;
	c->send_file_off = 0;
	req_free(r);
}

/* Writes ready responses in order until the socket is full. Returns false if the connection closed. */
static bool conn_write(kconn_t *c)
{
	while (c->head && c->head->ready) {
		kreq_t *r = c->head;
		if (r->no_response) {
			pop_head(c);
			continue;
		}
		kresp_t *resp = &r->resp;
		for (;;) {
			size_t mem_end = c->send_file < resp->nfiles ? resp->files[c->send_file].at : resp->mem.len;
			if (c->send_mem < mem_end) {
				ssize_t n = send(c->io.fd, resp->mem.data + c->send_mem, mem_end - c->send_mem,
						 MSG_NOSIGNAL | (c->send_file < resp->nfiles ? MSG_MORE : 0));
				if (n < 0 && (errno == EAGAIN || errno == EINTR))
					return true;
				if (n <= 0) {
					conn_close(c, "send failed");
					return false;
				}
				c->send_mem += (size_t)n;
				continue;
			}
			if (c->send_file >= resp->nfiles)
				break;
			log_range_t *lr = &resp->files[c->send_file].range;
			if (c->send_file_off < lr->len) {
				off_t off = (off_t)(lr->pos + c->send_file_off);
				ssize_t n = sendfile(c->io.fd, lr->fd, &off, (size_t)(lr->len - c->send_file_off));
				if (n < 0 && (errno == EAGAIN || errno == EINTR))
					return true;
				if (n <= 0) {
					conn_close(c, n == 0 ? "file range ended early" : "sendfile failed");
					return false;
				}
				c->send_file_off += n;
				continue;
			}
			c->send_file++;
			c->send_file_off = 0;
		}
		pop_head(c);
	}
	return true;
}

static void dispatch(kconn_t *c, kreq_t *req);

/* Takes complete frames out of the input buffer. Returns false if the connection closed. */
static bool conn_parse(kconn_t *c)
{
	kafka_opts_t *o = &c->w->srv->opts;
	size_t pos = 0;
	while (!c->closing && c->in.len - pos >= 4) {
		if (c->nreqs >= o->max_inflight_requests || c->inflight_bytes >= o->max_inflight_bytes)
			break;
		int32_t size = (int32_t)be32_load(c->in.data + pos);
		if (size < 8 || size > o->max_request_bytes) {
			char why[96];
			snprintf(why, sizeof why, "request size %" PRId32 " outside 8..%" PRId32, size,
				 o->max_request_bytes);
			conn_close(c, why);
			return false;
		}
		if (c->in.len - pos - 4 < (size_t)size)
			break;
		kreq_t *req = calloc(1, sizeof *req);
		ASSERT(req != NULL);
		req->conn = c;
		if (pos == 0 && c->in.len == 4 + (size_t)size && size >= STEAL_MIN) {
			/* The buffer holds this one large frame and nothing else (a big produce, typically):
			 * the request takes the buffer instead of a copy; the next read starts a new one. */
			req->frame_alloc = c->in.data;
			req->frame = c->in.data + 4;
			c->in = (buf_t){ 0 };
		} else {
			req->frame = req->frame_alloc = malloc((size_t)size);
			ASSERT(req->frame != NULL);
			memcpy(req->frame, c->in.data + pos + 4, (size_t)size);
			pos += 4 + (size_t)size;
		}
		req->frame_len = (size_t)size;
		req->start_ns = clock_mono_ns(clock_system());
		if (c->tail)
			c->tail->next = req;
		else
			c->head = req;
		c->tail = req;
		c->nreqs++;
		c->inflight_bytes += size;
		dispatch(c, req);
	}
	if (pos > 0) {
		memmove(c->in.data, c->in.data + pos, c->in.len - pos);
		c->in.len -= pos;
	}
	return !c->closing;
}

static void conn_kick(loop_task_t *t)
{
	kconn_t *c = t->data;
	c->kick_posted = false;
	if (c->closing) {
		conn_maybe_free(c);
		return;
	}
	if (!conn_write(c))
		return;
	kafka_opts_t *o = &c->w->srv->opts;
	bool over = c->nreqs >= o->max_inflight_requests || c->inflight_bytes >= o->max_inflight_bytes;
	if (c->reading_paused && !over) {
		c->reading_paused = false;
		if (!conn_parse(c)) /* frames that waited in the buffer */
			return;
		c->reading_paused = c->nreqs >= o->max_inflight_requests || c->inflight_bytes >= o->max_inflight_bytes;
	}
	conn_update_events(c);
}

static void conn_post_kick(kconn_t *c)
{
	if (c->kick_posted)
		return;
	c->kick_posted = true;
	loop_post(c->w->loop, &c->kick_task);
}

static void on_idle(loop_timer_t *t)
{
	kconn_t *c = t->data;
	if (c->head != NULL) { /* busy, not idle */
		loop_timer_start(c->w->loop, &c->idle_timer, c->w->srv->opts.idle_timeout_ms);
		return;
	}
	conn_close(c, "idle timeout");
}

static void on_partial_timeout(loop_timer_t *t)
{
	kconn_t *c = t->data;
	if (c->in.len > 0 && !c->reading_paused)
		conn_close(c, "request incomplete for too long");
}

static void on_conn_io(loop_io_t *io, uint32_t events)
{
	kconn_t *c = io->data;
	if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLIN)) {
		conn_close(c, NULL);
		return;
	}
	if (events & EPOLLOUT && !conn_write(c))
		return;
	if (events & EPOLLIN) {
		kafka_opts_t *o = &c->w->srv->opts;
		loop_timer_start(c->w->loop, &c->idle_timer, o->idle_timeout_ms);
		c->last_active_ns = loop_now_ns();
		for (int round = 0; round < 16; round++) {
			buf_reserve(&c->in, READ_CHUNK);
			ssize_t n = recv(c->io.fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (n <= 0) {
				conn_close(c, NULL);
				return;
			}
			c->in.len += (size_t)n;
			if (!conn_parse(c))
				return;
			if (c->nreqs >= o->max_inflight_requests || c->inflight_bytes >= o->max_inflight_bytes) {
				c->reading_paused = true;
				break;
			}
			if ((size_t)n < c->in.cap - c->in.len + (size_t)n)
				break; /* the socket is drained */
		}
		if (c->in.len == 0 && c->in.cap > 4 * READ_CHUNK)
			buf_free(&c->in); /* give back a buffer grown by one large request */
		/* A request that stays incomplete (one byte a second...) is not activity: it times out. */
		if (c->in.len == 0 || c->reading_paused)
			loop_timer_stop(c->w->loop, &c->partial_timer);
		else if (!loop_timer_armed(&c->partial_timer))
			loop_timer_start(c->w->loop, &c->partial_timer, o->request_timeout_ms);
	}
	if (!conn_write(c))
		return;
	conn_update_events(c);
}

static void on_accept(loop_io_t *io, uint32_t events);

static void on_accept_retry(loop_timer_t *t)
{
	kworker_t *w = t->data;
	loop_io_add(w->loop, &w->listen_io, EPOLLIN | EPOLLEXCLUSIVE);
}

static void on_accept(loop_io_t *io, uint32_t events)
{
	(void)events;
	kworker_t *w = io->data;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof peer;
		int fd = accept4(w->listen_fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: the listener stays readable, so stop watching it for a
				 * moment rather than spin; pending clients wait in the backlog. */
				log_warn("kafka: cannot accept (%s); pausing accepts for 100 ms", strerror(errno));
				loop_io_del(w->loop, &w->listen_io);
				loop_timer_start(w->loop, &w->accept_retry, 100);
			}
			return;
		}
		if (atomic_fetch_add(&w->srv->nconns, 1) >= w->srv->opts.max_connections) {
			/* At the limit: make room by closing this loop's longest-idle connection (nothing in
			 * flight), as nginx drains keep-alive connections; refuse only if none is idle. */
			kconn_t *victim = NULL;
			for (kconn_t *c = w->conns; c != NULL; c = c->next)
				if (!c->closing && c->head == NULL && c->in.len == 0 &&
				    (victim == NULL || c->last_active_ns < victim->last_active_ns))
					victim = c;
			if (victim == NULL) {
				atomic_fetch_sub(&w->srv->nconns, 1);
				log_warn("kafka: refusing a connection: max_connections (%d) reached and none idle",
					 w->srv->opts.max_connections);
				close(fd);
				continue;
			}
			conn_close(victim, "the longest idle connection makes room (max_connections reached)");
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		char host[INET_ADDRSTRLEN] = "?", peer_s[64];
		inet_ntop(AF_INET, &peer.sin_addr, host, sizeof host);
		snprintf(peer_s, sizeof peer_s, "%s:%d", host, ntohs(peer.sin_port));
		kafka_conn_new(w, fd, peer_s);
	}
}

kconn_t *kafka_conn_new(kworker_t *w, int fd, const char *peer)
{
	atomic_fetch_add(&storage_stats(w->srv->st)->kafka_connections, 1);
	kconn_t *c = calloc(1, sizeof *c);
	ASSERT(c != NULL);
	c->w = w;
	c->io.fd = fd;
	c->io.cb = on_conn_io;
	c->io.data = c;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	c->idle_timer.cb = on_idle;
	c->idle_timer.data = c;
	c->partial_timer.cb = on_partial_timeout;
	c->partial_timer.data = c;
	c->kick_task.cb = conn_kick;
	c->kick_task.data = c;
	c->last_active_ns = loop_now_ns();
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	if (loop_io_add(w->loop, &c->io, EPOLLIN) != OK) {
		c->io.events = 0;
		conn_close(c, "epoll");
		return c;
	}
	loop_timer_start(w->loop, &c->idle_timer, w->srv->opts.idle_timeout_ms);
	return c;
}


/* --- dispatch --- */

static const kapi_t *api_find(int16_t key)
{
	for (int i = 0; i < kapi_count; i++)
		if (kapi_table[i].key == key)
			return &kapi_table[i];
	return NULL;
}

static void dispatch(kconn_t *c, kreq_t *req)
{
	req->r = reader_make(req->frame, req->frame_len);
	reader_t *r = &req->r;
	req->api_key = reader_i16(r);
	req->api_version = reader_i16(r);
	req->correlation_id = reader_i32(r);
	req->client_id = kr_string(r).s;
	const kapi_t *api = api_find(req->api_key);
	if (r->err != OK || api == NULL) {
		char why[64];
		snprintf(why, sizeof why, "unknown or undecodable request (api key %d)", req->api_key);
		conn_close(c, why);
		return;
	}
	if (req->api_key == 18) { /* ApiVersions answers every version, with error 35 if unsupported */
		if (req->api_version >= 3)
			kr_tags(r);
		api->fn(req);
		return;
	}
	if (req->api_version < api->min || req->api_version > api->max) {
		char why[96];
		snprintf(why, sizeof why, "%s v%d is not supported (v%d-%d)", api->name, req->api_version, api->min,
			 api->max);
		conn_close(c, why);
		return;
	}
	api->fn(req);
}

/* --- server --- */

static void *worker_main(void *arg)
{
	kworker_t *w = arg;
	fl_thread_name("fl-kafka-loop");
	loop_run(w->loop);
	/* Shutdown: close every connection; pending requests finish through their callbacks (bounded). */
	for (kconn_t *c = w->conns; c != NULL; c = c->next)
		conn_close(c, NULL);
	for (int i = 0; i < 500 && w->conns != NULL; i++)
		loop_run_once(w->loop, 10);
	if (w->conns != NULL)
		log_warn("kafka: connections still waiting for the disk at shutdown");
	return NULL;
}

static err_t listen_socket(const kafka_opts_t *o, int port, int *out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, o->listen_host, &a.sin_addr) != 1) {
		log_error("kafka: --kafka-listen host '%s' is not an IPv4 address", o->listen_host);
		return ERR_INVALID;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ERR_SYS(errno);
	int one = 1; /* SO_REUSEADDR only: a second broker on the same port must fail, not share it */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1024) < 0) {
		err_t rc = ERR_SYS(errno);
		close(fd);
		return rc;
	}
	*out = fd;
	return OK;
}

err_t kafka_server_start(storage_t *st, const kafka_opts_t *opts, kafka_server_t **out)
{
	kafka_server_t *s = calloc(1, sizeof *s);
	ASSERT(s != NULL);
	s->st = st;
	s->opts = *opts;
	pthread_mutex_init(&s->pid_mu, NULL);
	s->nworkers = opts->threads > 0 ? opts->threads : 1;
	s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
	ASSERT(s->workers != NULL);
	err_t rc = OK;
	int port = opts->listen_port, lfd = -1;
	/* One listening socket; every loop waits on it with EPOLLEXCLUSIVE, so one of them accepts. */
	rc = listen_socket(opts, port, &lfd);
	if (rc == OK && port == 0) {
		struct sockaddr_in a;
		socklen_t alen = sizeof a;
		getsockname(lfd, (struct sockaddr *)&a, &alen);
		port = ntohs(a.sin_port);
	}
	for (int i = 0; i < s->nworkers; i++)
		s->workers[i].listen_fd = -1;
	for (int i = 0; i < s->nworkers && rc == OK; i++) {
		kworker_t *w = &s->workers[i];
		rc = kworker_init(w, s);
		if (rc == OK) {
			w->listen_fd = lfd;
			w->listen_io.fd = lfd;
			w->listen_io.cb = on_accept;
			w->listen_io.data = w;
			w->accept_retry.cb = on_accept_retry;
			w->accept_retry.data = w;
			rc = loop_io_add(w->loop, &w->listen_io, EPOLLIN | EPOLLEXCLUSIVE);
		}
	}
	s->listen_fd = lfd;
	s->port = port;
	const char *adv = opts->advertised_host ? opts->advertised_host
			  : strcmp(opts->listen_host, "0.0.0.0") == 0 ? "127.0.0.1"
								    : opts->listen_host;
	s->advertised_host = strdup(adv);
	if (s->opts.advertised_port == 0)
		s->opts.advertised_port = port;
	if (rc == OK)
		rc = coord_start(s, &s->coord);
	for (int i = 0; i < s->nworkers && rc == OK; i++)
		rc = -pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
	if (rc != OK) {
		log_error("kafka: cannot listen on %s:%d: %s", opts->listen_host, opts->listen_port, err_str(rc));
		coord_stop(s->coord);
		for (int i = 0; i < s->nworkers; i++) {
			if (s->workers[i].thread) {
				loop_stop(s->workers[i].loop);
				pthread_join(s->workers[i].thread, NULL);
			}
			loop_free(s->workers[i].loop);
		}
		if (lfd >= 0)
			close(lfd);
		free(s->workers);
		free(s->advertised_host);
		free(s);
		return rc;
	}
	log_info("kafka: listening on %s:%d (advertised as %s:%d, node %d, %d threads)", opts->listen_host, port,
		 s->advertised_host, s->opts.advertised_port, opts->node_id, s->nworkers);
	*out = s;
	return OK;
}

int kafka_server_port(const kafka_server_t *s)
{
	return s->port;
}

void kafka_server_stop(kafka_server_t *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->coord_closing, true);
	coord_stop(s->coord); /* first: it answers parked joins, which the loops then write out */
	for (int i = 0; i < s->nworkers; i++)
		loop_stop(s->workers[i].loop);
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i].thread, NULL);
	close(s->listen_fd);
	for (int i = 0; i < s->nworkers; i++)
		loop_free(s->workers[i].loop);
	free(s->workers);
	free(s->advertised_host);
	pthread_mutex_destroy(&s->pid_mu);
	free(s);
}

/* --- helpers shared by the handlers --- */

int16_t kerr_from(err_t err)
{
	switch (err) {
	case OK: return KERR_NONE;
	case ERR_CRC:
	case ERR_MALFORMED: return KERR_CORRUPT_MESSAGE;
	case ERR_TOO_LARGE: return KERR_MESSAGE_TOO_LARGE;
	case ERR_TIMESTAMP: return KERR_INVALID_TIMESTAMP;
	case ERR_OUT_OF_RANGE: return KERR_OFFSET_OUT_OF_RANGE;
	case ERR_NOT_FOUND: return KERR_UNKNOWN_TOPIC_OR_PARTITION;
	case ERR_SEQUENCE: return KERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
	case ERR_FENCED: return KERR_INVALID_PRODUCER_EPOCH;
	default: return KERR_KAFKA_STORAGE_ERROR;
	}
}

topic_t *kafka_topic(kreq_t *req, slice_t name, bool allow_create, int16_t *kerr)
{
	char buf[TOPIC_NAME_MAX + 1];
	if (name.len == 0 || name.len > TOPIC_NAME_MAX) {
		*kerr = KERR_INVALID_TOPIC_EXCEPTION;
		return NULL;
	}
	memcpy(buf, name.ptr, name.len);
	buf[name.len] = 0;
	if (strlen(buf) != name.len) { /* an embedded NUL */
		*kerr = KERR_INVALID_TOPIC_EXCEPTION;
		return NULL;
	}
	storage_t *st = kreq_storage(req);
	topic_t *t = storage_topic_get(st, buf);
	if (t == NULL && allow_create && kreq_server(req)->opts.auto_create_topics) {
		err_t rc = storage_topic_create(st, buf, kreq_server(req)->opts.default_partitions, NULL, 0);
		if (rc != OK && rc != ERR_EXISTS) {
			*kerr = rc == ERR_INVALID ? KERR_INVALID_TOPIC_EXCEPTION : KERR_UNKNOWN_SERVER_ERROR;
			return NULL;
		}
		t = storage_topic_get(st, buf);
	}
	*kerr = t ? KERR_NONE : KERR_UNKNOWN_TOPIC_OR_PARTITION;
	return t;
}
