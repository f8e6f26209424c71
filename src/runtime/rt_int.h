/*
 * rt_int.h -- the functions runtime's internal types, shared by runtime.c (lifecycle, producer,
 * introspection), trigger.c (one consumer and scheduler per trigger) and worker.c (the worker pool).
 *
 * Lifecycle of an event (rt_ev_t), owned by its trigger's consumer thread from poll to free:
 *
 *   polled --filter--> DONE (filtered out)
 *      \--> QUEUED --dispatch--> INFLIGHT --ok--> DONE
 *             ^                     |
 *             |  whole batch failed, more than one event: split halves, back to QUEUED (bisection)
 *             |                     |
 *             +--backoff-- RETRY <--+ one event failed (or listed as failed), attempts left
 *                                   |
 *                                   +--attempts or age exhausted--> DEAD (dead letter produced) --acked--> DONE
 *
 * An event keeps its record (librdkafka's message), not its CloudEvent: the text is built by whoever needs it
 * (rt_ev_json), which for an invocation is the worker writing the request, so that the consumer thread, one per
 * trigger, does not spend its time formatting JSON while the other cores wait for it.
 *
 * A partition's events stay in offset order in its queue until DONE reaches the head; the committed offset is
 * the first undone offset. Only the consumer thread changes an event's state; a worker only reads the events
 * of the job it was handed (and the job's result fields, which it owns until it posts the job back).
 *
 * A replay (replay.c) is a bounded trigger: the same rt_trigger_t and scheduler with tr->rp set. It assigns
 * explicit ranges [from, end) instead of subscribing, drops records at or past a partition's end, commits to
 * its own group with the range's end in the commit metadata, and sets tr->finished once every partition's
 * events below its end are done and committed.
 */
#ifndef FL_RUNTIME_RT_INT_H
#define FL_RUNTIME_RT_INT_H

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "runtime/runtime.h"

typedef struct rt_fn rt_fn_t;
typedef struct rt_trigger rt_trigger_t;
typedef struct rt_app rt_app_t;
typedef struct rt_replay rt_replay_t;

enum { EV_QUEUED, EV_INFLIGHT, EV_RETRY, EV_DEAD, EV_DONE };

typedef struct {
	rd_kafka_message_t *msg; /* the record as polled: key, payload, headers (parsed on first use); owned, destroyed
				  * with the event, or by the worker when its whole batch succeeded (then NULL).
				  * Copying records out at poll time, and parsing their headers there, was half of
				  * the consumer thread's work; holding the message pins its fetch buffer
				  * only while the event is undone. The header parse writes into the message, so only
				  * the thread holding the event reads them: the worker while its job is in flight,
				  * else the consumer thread (dead letters, filters). */
	int32_t partition;
	int64_t offset;
	int64_t ts_ms;           /* the record's timestamp */
	int64_t arrived_ms;      /* when polled (monotonic) */
	int64_t ready_ms;        /* RETRY: when it may run again (monotonic) */
	uint64_t keyhash;        /* 0 for a null key */
	int state;
	int attempts;            /* failed invocations of this event on its own (or listed as failed) */
	int split;               /* the largest batch it may join; halved by bisection */
	bool dl_inflight;        /* DEAD: its dead letter is being produced */
	char *error;             /* the last failure, malloc'd */
} rt_ev_t;

/* Undone events of a partition in offset order: a ring of pointers. */
typedef struct {
	rt_ev_t **v;
	size_t head, n, cap;
} rt_evq_t;

/* Keys of events in flight (ordering key): 64-bit key hash -> count, open addressing. A hash collision
 * only serializes two keys that could have run in parallel; order is never violated. */
typedef struct {
	uint64_t *keys;
	int32_t *counts;
	size_t cap, n;
} rt_keyset_t;

/* A set of key hashes cleared in O(1) by bumping its generation: the keys blocked during one batch scan. */
typedef struct {
	uint64_t *keys;
	uint32_t *gens;
	size_t cap, n;
	uint32_t gen;
} rt_genset_t;

typedef struct {
	int32_t partition;
	bool assigned;
	int dead_waiting;        /* DEAD events whose dead letter is not in flight */
	int dead_inflight;       /* dead letters being produced */
	rt_evq_t q;
	rt_keyset_t locks;
	int64_t next_offset;     /* after the last polled record; -1 before the first */
	int64_t committed;       /* last offset committed; -1 none */
	int inflight;            /* jobs in flight */
	bool paused;
	int64_t end;             /* replay: the first offset past its range; INT64_MAX for a live trigger */
	bool at_end;             /* replay: every record below end was polled; paused for good */
} rt_part_t;

enum { JOB_INVOKE, JOB_DEAD_LETTER };

/* A delivery report's opaque starts with its kind. */
typedef struct {
	int kind;
} rt_dr_t;

typedef struct rt_job {
	rt_dr_t dr;              /* JOB_DEAD_LETTER: the report comes back with this job */
	struct rt_job *next;
	rt_trigger_t *tr;
	rt_part_t *part;
	rt_ev_t **evs;           /* borrowed from the partition's queue */
	int n;
	uint64_t id;
	/* Result, written by the worker (or the producer thread) before posting the job back. */
	int status;              /* 0 ok, 1 failed as a whole, 2 some events failed */
	bool purged;             /* failed because a stopping runtime purged its emits: not the events' fault */
	char *error;             /* malloc'd */
	int *failed;             /* indexes into evs (status 2), malloc'd */
	int nfailed;
	int64_t started_ns, ended_ns;
} rt_job_t;

/* Emits of one invocation waiting for their delivery reports. */
typedef struct {
	rt_dr_t dr;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int pending;
	rd_kafka_resp_err_t err;
} rt_emit_wait_t;

typedef struct {
	int32_t partition;
	int64_t committed, high, queued, inflight;
	bool paused;
} rt_part_snap_t;

struct rt_trigger {
	rt_fn_t *fn;
	const fn_trigger_t *def;
	int index;               /* in invocation ids; a replay's is 1000 + its live trigger's index */
	rt_replay_t *rp;         /* NULL for a live trigger; else the replay this bounded trigger serves */
	const char *group;       /* the consumer group: def->group, or the replay's "<group>.replay" */
	atomic_bool finished;    /* replay: every event below the ends is done and committed; the thread exits */
	bool mu_ready;           /* mu and cond are initialized (once, by rt_trigger_start; rt_trigger_fini) */
	rd_kafka_t *consumer;
	rd_kafka_queue_t *cq;    /* the consumer queue: workers yield it to wake the scheduler */
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	pthread_mutex_t mu;      /* done list and snapshot */
	pthread_cond_t cond;
	rt_job_t *done_head, *done_tail;
	atomic_bool done_ready;  /* done_head is not empty: set by posters, cleared by take_done (a hint) */
	rt_part_t **parts;       /* by partition id; owned by the consumer thread */
	int nparts;
	int rr;                  /* the partition the scheduler starts with, rotating for fairness */
	size_t pending_cap;      /* undone events a partition may hold before it is paused (trigger.c) */
	uint64_t next_job_id;
	int64_t last_commit_ns;
	bool commit_due;
	rt_part_snap_t *snap;    /* under mu */
	int nsnap;
	char state[160];         /* under mu */
	bool commit_inflight;    /* an asynchronous commit awaits its callback */
	int64_t last_snap_ns;
	struct rt_nudger *nudger; /* fetch_nudge's helper thread (trigger.c), while the consumer thread runs */
	int nudges_left, nudge_rr; /* fetch_nudge: requests it may still send since armed; the next partition */
	int64_t polled_bytes, polled_n; /* key and value bytes of the records polled, and how many */
	rt_genset_t scan_blocked; /* scratch of one batch build */
	rt_ev_t **scratch;        /* scratch of one batch build: batch_size slots */
	rt_ev_t **ev_cache;       /* freed events kept for reuse (trigger.c ev_new), ev_cached of them */
	size_t ev_cached;
};

/* Counters, read without locks for introspection. */
typedef struct {
	atomic_llong events_in, events_ok, filtered, retries, dead_lettered, discarded, emitted;
	atomic_llong invocations, errors, timeouts, crashes, bisections, cold_starts;
	atomic_llong last_cold_start_ms, invoke_ns_total;
} rt_stats_t;

struct rt_app {
	app_t *app;
	atomic_int refs;
};

struct rt_fn {
	runtime_t *rt;
	rt_app_t *app;           /* a reference keeps def alive */
	const fn_def_t *def;
	char *log_path;
	char *state_var;         /* "FACTLOG_STATE_DIR=<log dir>/<name>": the function's own directory, absolute */
	rt_trigger_t *triggers;
	int ntriggers;
	/* the worker pool */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	rt_job_t *q_head, *q_tail;
	int queued, nworkers, nidle, nbusy;
	bool stopping;
	pthread_cond_t exited;   /* signalled as workers exit */
	rt_stats_t stats;
	/* the last invocation durations, for percentiles (under mu) */
	int64_t lat_ms[256];
	uint64_t nlat;
	pthread_mutex_t rp_mu;   /* replay: the pointer only (see replay.c for the lock order) */
	rt_replay_t *replay;     /* NULL, or the running or last replay */
};

struct runtime {
	runtime_opts_t opts;
	char *bootstrap;
	char *log_dir;
	rd_kafka_t *producer;
	pthread_t producer_thread;
	atomic_bool stopping;
	atomic_llong draining_since_ms; /* runtime_stop began (monotonic ms), 0 before: see producer_main */
	pthread_mutex_t mu;      /* fns and app */
	rt_fn_t **fns;
	int nfns;
	rt_app_t *app;
};

/* One partition of a replay's range. */
typedef struct {
	int32_t partition;
	int64_t from, end;       /* the range [from, end), clamped to [log start, high watermark] */
	int64_t pos;             /* the first offset not done yet (under rp->mu) */
	bool resumed;            /* from is where an unfinished earlier replay committed */
} rt_rp_part_t;

/* The state a live trigger shows while a replay --then live holds it stopped. */
#define RT_REPLAY_HELD "stopped for a replay"

/* A replay commits its progress with this metadata followed by the range's end offset. */
#define RT_REPLAY_METADATA "factlog-replay end="

/* Where a replay starts or ends, as requested. */
typedef enum { RP_EARLIEST, RP_LATEST, RP_OFFSET, RP_TIME } rt_rp_kind_t;
typedef struct {
	rt_rp_kind_t kind;
	int64_t v;               /* RP_OFFSET: the offset; RP_TIME: epoch milliseconds */
} rt_rp_bound_t;

/* A replay's states: STARTING -> RUNNING -> (HANDOVER ->) DONE, or FAILED / CANCELLED from any of them. */
enum { RP_STARTING, RP_RUNNING, RP_HANDOVER, RP_DONE, RP_FAILED, RP_CANCELLED };

/* One replay of a function's trigger (replay.c). Owned by its function (fn->replay) from the request until the
 * next replay or the function's stop; its controller thread runs replay_main. */
struct rt_replay {
	rt_fn_t *fn;
	int trigger;             /* the index of the function's trigger it replays */
	rt_rp_bound_t from, to;
	bool has_to, then_live;
	char from_text[64], to_text[64];
	char id[17];             /* random hex: tells this replay from an earlier one */
	char group[320];         /* "<trigger group>.replay" */
	fn_trigger_t def;        /* the live trigger's definition (a shallow copy) with replay concurrency */
	rt_trigger_t tr;         /* the bounded trigger */
	pthread_t thread;
	bool thread_started;
	atomic_bool cancel;      /* set by a DELETE or by the function's stop */
	atomic_bool fn_stopping; /* the function stops: do not start its live trigger again; keep the record */
	atomic_bool cancelled;   /* a request cancelled it: its record goes even if the function stops too */
	bool recovered;          /* started again from its record after the function (or server) restarted */
	rt_rp_part_t *rec_parts; /* recovered: the ranges its record holds (NULL: not resolved before) */
	int rec_nparts;
	pthread_mutex_t mu;      /* the fields below */
	pthread_cond_t cond;     /* signalled as progress is noted */
	int state;
	char error[512];
	rt_rp_part_t *parts;
	int nparts;
	int64_t total, done;
	int64_t started_wall_ms, finished_wall_ms, run_start_ms, run_end_ms; /* run_*: monotonic */
};

/* trigger.c */
/* Creates the trigger's consumer (group tr->group, or def->group), unless it has one. */
err_t rt_trigger_open(rt_trigger_t *tr, char *err, size_t errcap);
/* Opens the consumer if needed and starts the consumer thread. Can start a stopped trigger again. */
err_t rt_trigger_start(rt_trigger_t *tr, char *err, size_t errcap);
/* Stops the thread (invocations in flight finish, positions are committed) and closes the consumer.
 * Idempotent; the trigger can be started again. */
void rt_trigger_stop(rt_trigger_t *tr);
/* Releases what survives a stop (the lock introspection takes). */
void rt_trigger_fini(rt_trigger_t *tr);
/* Sets the state introspection shows (e.g. while a replay holds the trigger stopped). */
void rt_trigger_set_state(rt_trigger_t *tr, const char *state);
/* Hands a finished job back to its trigger (any thread). */
void rt_trigger_post(rt_job_t *job);
json_t *rt_trigger_json(rt_trigger_t *tr);

/* worker.c */
void rt_pool_submit(rt_fn_t *fn, rt_job_t *job);
/* Starts scale.min warm workers. */
void rt_pool_start_min(rt_fn_t *fn);
/* Whether a new batch would find a worker soon: fewer batches queued than workers free (at least one).
 * The scheduler holds back otherwise, so that under load events wait in their partition's queue and
 * the next batch is bigger, instead of many small batches waiting in the pool's queue. */
bool rt_pool_has_room(rt_fn_t *fn);
/* Takes back tr's jobs still queued for a worker (all, or only those of unassigned partitions) and posts
 * them to tr as failed; returns how many. */
int rt_pool_cancel(rt_fn_t *fn, rt_trigger_t *tr, bool only_unassigned);
/* Stops the pool: workers finish their job, kill their process and exit. */
void rt_pool_stop(rt_fn_t *fn);

/* replay.c */
/* Cancels and frees the function's replay, if any; its live trigger is left stopped if the replay held it.
 * A replay that had not ended keeps its record (LOG_DIR/NAME.replay): the function's next start resumes it. */
void rt_replay_stop_fn(rt_fn_t *fn);
/* The replay the function's record says had not ended, built but not started, or NULL (none; or unusable:
 * logged and set aside). *held: the index of the trigger its `then live` hand-over holds stopped, or -1;
 * fn_start leaves that trigger stopped so the live group cannot move before the hand-over. */
rt_replay_t *rt_replay_recorded(rt_fn_t *fn, int *held);
/* Starts a replay rt_replay_recorded returned (taken): fn->replay owns it from then on. */
void rt_replay_resume(rt_fn_t *fn, rt_replay_t *rp);
/* Removes the record of function `name` (it left the app: nothing is to resume). */
void rt_replay_forget(runtime_t *rt, const char *name);
/* Removes the records of functions the running app does not have (they left it while the server was
 * down). Takes rt->mu. */
void rt_replay_sweep(runtime_t *rt);
/* The function's replay as JSON, or NULL when it has none (new reference). */
json_t *rt_replay_json_fn(rt_fn_t *fn);

/* runtime.c */
void rt_fn_log(rt_fn_t *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Produces a CloudEvent given as JSON (with "topic"); cause gives provenance. 0 or an error message. */
const char *rt_produce_emit(rt_fn_t *fn, json_t *emit, json_t *cause, rt_emit_wait_t *w);
/* Produces a dead letter for job->evs[0]; the job comes back through rt_trigger_post. */
err_t rt_produce_dead_letter(rt_job_t *job, const char *topic);
int64_t rt_now_ms(void);
int64_t rt_wall_ms(void); /* CLOCK_REALTIME: for record timestamps */
/* Appends an event's CloudEvent as compact JSON text (ce_record_to_text, with its topic) to b. Any thread
 * that may read the event (its trigger's consumer thread, or the worker holding its job). */
void rt_ev_json(const char *topic, const rt_ev_t *ev, buf_t *b);
/* The same as a document (new reference; NULL only if out of memory). */
json_t *rt_ev_ce(const char *topic, const rt_ev_t *ev);
int64_t rt_now_ns(void);

#endif
