/*
 * storage.h -- the ledger on disk: topics of partitions, their metadata, and the flusher.
 *
 * Purpose: the one storage engine behind every front door (Kafka, HTTP, CLI). It owns the data directory:
 *   <data>/meta.db                      topics and configs (SQLite, see meta.h)
 *   <data>/topics/<topic>/<partition>/  segments of one partition (see partition.h)
 *   <data>/trash/                       directories of deleted topics, removed on the next start
 *   <data>/.lock                        held (flock) while a process has the directory open
 * Invariants:
 *   1. A topic exists iff its row is in meta.db; its partition directories are created on open.
 *   2. Every partition's durability work runs on the flusher threads: appends notify them, they fsync
 *      (group commit; different partitions in parallel, one partition never twice at once) and complete
 *      durability waiters; the first also applies retention periodically.
 *   3. A topic_t handed out by storage_topic_get stays valid (partitions open) until topic_put, even if the
 *      topic is deleted meanwhile; deletion closes its partitions at the last put.
 * Threads: every function is thread-safe. Waiter callbacks run on the flusher thread.
 * Ownership: storage_open's caller owns the storage_t and frees it with storage_close (which stops the
 *   flusher, flushes and seals everything). Strings are copied.
 */
#ifndef FL_STORAGE_STORAGE_H
#define FL_STORAGE_STORAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/err.h"
#include "storage/io.h"
#include "storage/partition.h"

#define TOPIC_NAME_MAX 249
#define TOPIC_PARTITIONS_MAX 10000
#define STORAGE_FLUSH_THREADS_MAX 64

typedef struct storage storage_t;
typedef struct topic topic_t;

typedef struct {
	const char *data_dir;
	io_t *io;                   /* NULL: the real file system */
	const clock_src_t *clock;   /* NULL: the system clock */
	partition_config_t defaults; /* topic config defaults (flush policy included) */
	int64_t retention_check_ms; /* how often retention runs (default 300000) */
	int flush_threads;          /* partitions fsynced at once (default 2; 1 with interval policy) */
	/* Tiered storage (archiver.h): where topics with remote.storage.enable=true copy sealed segments.
	 * NULL: no archive (such topics then keep every segment locally until the total retention). */
	const char *archive_location; /* a directory, or s3://BUCKET[/PREFIX] */
	const char *s3_endpoint, *s3_region;
	int64_t archive_check_ms;     /* how often the archiver looks for sealed segments (default 10000) */
	int64_t archive_cache_bytes;  /* S3: the download cache's size limit (default ARCHIVE_CACHE_BYTES_DEFAULT) */
} storage_opts_t;

void storage_opts_default(storage_opts_t *o, const char *data_dir);
/* Parses a flush policy: "always", "never" or "interval:MS". */
err_t storage_parse_flush_policy(const char *s, int *policy, int64_t *interval_ms);

typedef struct {
	const char *key, *value;
} topic_kv_t;

/* Opens the data directory (creating it), recovers every partition and starts the flusher. A partition
 * that fails recovery (ERR_CORRUPT) stays unavailable while the rest serve; its error is logged. */
err_t storage_open(const storage_opts_t *opts, storage_t **out);
void storage_close(storage_t *st);
/* The server is stopping: archive transfers in progress (S3) abort within about a second and later ones fail,
 * so that a reader waiting for a hung download (an HTTP request, a fetch) cannot hold the stop. Reads of
 * archived data fail from then on. Call before stopping the servers that read. */
void storage_cancel_archive(storage_t *st);

/* Validates the name ([A-Za-z0-9._-], 1..249, not "." or ".."), the count and each config, then creates. */
err_t storage_topic_create(storage_t *st, const char *name, int32_t partitions, const topic_kv_t *configs,
			   int nconfigs);
err_t storage_topic_delete(storage_t *st, const char *name);
/* Grows a topic to `total` partitions (Kafka's CreatePartitions); shrinking is ERR_INVALID. */
err_t storage_topic_add_partitions(storage_t *st, const char *name, int32_t total);
/* Sets (value non-NULL) or resets (NULL) a config; ERR_INVALID for an unknown key or bad value. */
err_t storage_topic_config_set(storage_t *st, const char *name, const char *key, const char *value);

/* A counted reference to a topic, or NULL if it does not exist. */
topic_t *storage_topic_get(storage_t *st, const char *name);
void topic_put(topic_t *t);
const char *topic_name(const topic_t *t);
/* When the topic was created (wall ms): with the name, it identifies this incarnation of the topic. */
int64_t topic_created_ms(const topic_t *t);
int32_t topic_partition_count(topic_t *t);
/* The partition, or NULL when idx is out of range or the partition failed to open (*open_err set). */
partition_t *topic_partition(topic_t *t, int32_t idx, err_t *open_err);
/* The topic's effective config (defaults overridden by its own settings) and its explicit settings. */
void topic_config(topic_t *t, partition_config_t *cfg);
typedef void (*topic_kv_fn)(void *arg, const char *key, const char *value);
void topic_config_list(topic_t *t, topic_kv_fn fn, void *arg);

/* Calls fn for each topic name, in order. */
typedef void (*storage_topic_fn)(void *arg, const char *name);
void storage_topic_names(storage_t *st, storage_topic_fn fn, void *arg);

/* Applies one config key (Kafka's name) to cfg; ERR_INVALID names the problem through *why. */
err_t topic_config_apply(partition_config_t *cfg, const char *key, const char *value, const char **why);

/* A producer id never handed out before, across restarts (ids are reserved in blocks in meta.db). */
err_t storage_next_producer_id(storage_t *st, int64_t *id);

/* Adds a function called (from any thread, no lock held) whenever a partition's high watermark advances:
 * readers waiting for data look again. Add hooks before traffic starts; they stay until close. A hook
 * must be cheap and must tolerate calls after its owner stopped (check a flag). */
#define STORAGE_DATA_HOOKS_MAX 4
err_t storage_add_data_hook(storage_t *st, void (*fn)(void *arg), void *arg);
/* Runs the data hooks: something a reader waits for may be there now (an archived segment arrived). */
void storage_notify_data(storage_t *st);

/* --- committed consumer-group offsets: durable (meta.db) and observable (read-your-writes) --- */

typedef struct commit_waiter commit_waiter_t;
struct commit_waiter {
	commit_waiter_t *next;             /* owned by storage while registered */
	const char *group, *topic;         /* borrowed: must outlive the registration */
	int32_t partition;
	int64_t offset;                    /* complete once the committed offset is > this */
	void (*cb)(commit_waiter_t *w, int64_t committed); /* any thread; never inside the registering call */
	void *arg;
};

/* Stores a commit durably, then completes the waiters it satisfies. */
err_t storage_commit_offset(storage_t *st, const char *group, const char *topic, int32_t partition,
			    int64_t offset, const char *metadata);
/* The committed offset, or -1. */
int64_t storage_committed_offset(storage_t *st, const char *group, const char *topic, int32_t partition);
/* Registers w unless already satisfied: returns 1 (satisfied, not registered) or 0 (registered). */
int storage_wait_commit(storage_t *st, commit_waiter_t *w);
/* Unregisters w; returns false if it already completed (or its callback is running). */
bool storage_cancel_commit_wait(storage_t *st, commit_waiter_t *w);

/* --- counters for /metrics, shared by every front door (relaxed atomics) --- */
#define STATS_FSYNC_BUCKETS 12
extern const double storage_fsync_bucket_le[STATS_FSYNC_BUCKETS]; /* seconds; the last is +Inf */
/* A latency histogram with the buckets above (cumulative, as Prometheus wants them). */
typedef struct {
	_Atomic uint64_t count, ns_sum, bucket[STATS_FSYNC_BUCKETS];
} stats_hist_t;
void stats_hist_observe(stats_hist_t *h, int64_t ns);

typedef struct {
	_Atomic uint64_t appends, append_bytes, append_records;
	_Atomic uint64_t fetches, fetch_bytes;
	stats_hist_t fsync;            /* group-commit fsync rounds, one partition each */
	stats_hist_t kafka_produce[2]; /* Produce, the request read -> its answer ready: [0] acks=1, [1] acks=all */
	stats_hist_t http_produce;     /* POST .../events answered 2xx: the request's headers in -> its receipts out */
	_Atomic int64_t kafka_connections;
} storage_stats_t;

storage_stats_t *storage_stats(storage_t *st);
/* Calls fn for every committed (group, topic, partition, offset). */
typedef void (*storage_commit_fn)(void *arg, const char *group, const char *topic, int32_t partition,
				  int64_t offset);
void storage_commits_each(storage_t *st, storage_commit_fn fn, void *arg);

/* The metadata store, for the front doors' own durable state. Thread-safe. */
struct meta;
struct meta *storage_meta(storage_t *st);

/* The archive's figures for one partition: segments archived, offsets [start, end) (-1 when none). */
void storage_archive_info(storage_t *st, const char *topic, int32_t partition, int64_t *segments,
			  int64_t *start, int64_t *end);
/* "directory DIR" or "s3://bucket/prefix at URL", or NULL without an archive. */
const char *storage_archive_describe(storage_t *st);
/* Runs one archiver pass now, on the caller's thread (tests). */
void storage_archive_now(storage_t *st);

/* Flushes every partition now (tests and shutdown). */
void storage_flush_all(storage_t *st);

#endif
