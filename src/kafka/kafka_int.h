/*
 * kafka_int.h -- internals shared by the Kafka server files: connections, requests, responses, the API
 * table. Thread: everything here belongs to one worker's loop thread unless noted.
 */
#ifndef FL_KAFKA_INT_H
#define FL_KAFKA_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/buf.h"
#include "core/loop.h"
#include "kafka/kafka.h"
#include "kafka/kproto.h"
#include "storage/partition.h"

typedef struct kworker kworker_t;
typedef struct kconn kconn_t;
typedef struct kreq kreq_t;

typedef struct coord coord_t;

struct kafka_server {
	storage_t *st;
	coord_t *coord;
	atomic_bool coord_closing; /* shutdown: group requests close their connection instead */
	kafka_opts_t opts;
	int port;
	int listen_fd; /* shared by every worker's loop (EPOLLEXCLUSIVE) */
	char *advertised_host;
	kworker_t *workers;
	int nworkers;
	atomic_int nconns;
	pthread_mutex_t pid_mu; /* producer-id allocation */
};

struct kworker {
	kafka_server_t *srv;
	loop_t *loop;
	pthread_t thread;
	int listen_fd; /* the server's */
	loop_io_t listen_io;
	loop_timer_t accept_retry; /* after EMFILE: stop accepting for a moment instead of spinning */
	kconn_t *conns; /* doubly linked */
	kreq_t *parked; /* fetches waiting for data */
	loop_task_t data_task;
	atomic_bool data_posted;
	/* How many fetches are parked: new data wakes only loops with some (written by the loop, read by the
	 * storage's flusher). */
	atomic_int nparked;
};

/* A file range spliced into a response after `at` bytes of its memory part. */
typedef struct {
	size_t at;
	log_range_t range;
} kfile_t;

typedef struct {
	buf_t mem; /* starts with the 4-byte size and the response header */
	kfile_t *files;
	int nfiles, capfiles;
	int64_t total; /* mem.len + file bytes, known once finished */
} kresp_t;

struct kreq {
	kconn_t *conn;
	kreq_t *next;        /* the connection's queue, in arrival order */
	kreq_t *park_next, *park_prev;
	int16_t api_key, api_version;
	int32_t correlation_id;
	slice_t client_id;   /* into frame */
	loop_task_t task;    /* hand-offs to and from the group coordinator */
	uint8_t *frame;      /* the request bytes after the length */
	uint8_t *frame_alloc; /* what to free: frame, or the input buffer it lies in (taken from the connection) */
	size_t frame_len;
	reader_t r;          /* positioned at the body */
	kresp_t resp;
	int pending;         /* async completions outstanding */
	bool ready;          /* the response is complete (or there is none) */
	bool no_response;    /* acks=0 */
	bool parked;
	void (*retry)(kreq_t *req, bool final); /* while parked */
	int64_t start_ns;    /* when the whole request had been read (monotonic) */
	void *ctx;           /* handler state */
	void (*ctx_free)(kreq_t *req);
	loop_timer_t timer;
};

struct kconn {
	kworker_t *w;
	kconn_t *prev, *next;
	loop_io_t io;
	buf_t in;
	kreq_t *head, *tail;
	int nreqs;
	int64_t inflight_bytes;
	size_t send_mem;   /* bytes of head's mem sent */
	int send_file;     /* index of the file range being sent */
	int64_t send_file_off;
	bool closing, reading_paused, kick_posted;
	loop_timer_t partial_timer; /* armed while a frame is incomplete (slowloris) */
	int64_t last_active_ns;     /* the last bytes received */
	loop_task_t kick_task; /* writes, resumes reading, frees: never inside a handler's call stack */
	loop_timer_t idle_timer;
	char peer[64];
};

/* Adopts an accepted (non-blocking) socket as a connection of worker w; counts toward nconns. */
kconn_t *kafka_conn_new(kworker_t *w, int fd, const char *peer);
/* A worker's own state and event loop (not its listener): kafka_server_start, and the request fuzzer. */
err_t kworker_init(kworker_t *w, kafka_server_t *s);

typedef void (*kapi_fn)(kreq_t *req);
typedef struct {
	int16_t key, min, max;
	const char *name;
	kapi_fn fn;
} kapi_t;

extern const kapi_t kapi_table[];
extern const int kapi_count;

/* Response building. begin writes the header; finish patches the size. */
void kresp_begin(kreq_t *req);
void kresp_add_range(kreq_t *req, log_range_t *r); /* takes over the range's reference */
void kreq_finish(kreq_t *req);                     /* response complete: finish + try to send */
/* The request could not be decoded: the connection is closed (Kafka's answer to a broken frame). */
void kreq_malformed(kreq_t *req);
/* An async part completed (loop thread): pending--, and the handler's `done` runs when it reaches 0. */
void kreq_async_done(kreq_t *req, void (*done)(kreq_t *req));

static inline storage_t *kreq_storage(const kreq_t *req)
{
	return req->conn->w->srv->st;
}
static inline kafka_server_t *kreq_server(const kreq_t *req)
{
	return req->conn->w->srv;
}
static inline loop_t *kreq_loop(const kreq_t *req)
{
	return req->conn->w->loop;
}

/* Parking (a fetch's long poll; a ListOffsets waiting for the archive): the worker calls retry(req, false)
 * on data notifications (the storage's data hook: new data, or a download done) and retry(req, true) once
 * timeout_ms has passed, after unparking it. A retry that can answer unparks and finishes the request. */
void kreq_park(kreq_t *req, int64_t timeout_ms, void (*retry)(kreq_t *req, bool final));
void kreq_unpark(kreq_t *req);

/* err_t -> Kafka error code for a partition-level storage failure. */
int16_t kerr_from(err_t err);
/* Looks a topic up, creating it when auto-creation is on and allowed; NULL with *kerr set otherwise. */
topic_t *kafka_topic(kreq_t *req, slice_t name, bool allow_create, int16_t *kerr);

/* Handlers, one per API (api_*.c). */
void kapi_api_versions(kreq_t *req);
void kapi_metadata(kreq_t *req);
void kapi_produce(kreq_t *req);
void kapi_fetch(kreq_t *req);
void kapi_fetch_retry(kreq_t *req, bool final);
void kapi_list_offsets(kreq_t *req);
void kapi_find_coordinator(kreq_t *req);
void kapi_create_topics(kreq_t *req);
void kapi_delete_topics(kreq_t *req);
void kapi_create_partitions(kreq_t *req);
void kapi_describe_configs(kreq_t *req);
void kapi_alter_configs(kreq_t *req);
void kapi_init_producer_id(kreq_t *req);
/* Group APIs: handed to the coordinator thread (group.c). */
void kapi_group(kreq_t *req);

err_t coord_start(kafka_server_t *s, coord_t **out);
void coord_stop(coord_t *co);

#endif
