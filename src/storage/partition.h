/*
 * partition.h -- one partition of a topic: an append-only, offset-addressed log of RecordBatch v2 batches.
 *
 * Purpose: append batches and hand out offsets, read whole batches by offset or timestamp as file ranges
 * (for sendfile), make appends durable by group commit, recover after a crash, and drop old segments.
 *
 * Invariants:
 *   1. Offsets are dense: every batch's base offset = the previous batch's last offset + 1.
 *   2. log_start <= hwm <= log_end. With the `always` flush policy hwm = durable_end, so a reader never
 *      sees a record that a crash could take back; with `interval` and `never`, hwm = log_end.
 *   3. A waiter for offset O completes exactly once: OK when durable_end > O, or an error.
 *   4. An fdatasync or write failure (other than a full disk) makes the partition FAILED: every later
 *      append, wait and read fails with ERR_FAILED until the partition is reopened, which recovers from disk.
 *      A full disk (ENOSPC) fails only that append and leaves no partial batch.
 *   5. Recovery: segments are trusted from their sealed index trailers; the active segment is scanned and
 *      a torn tail past the durable point (the recovery checkpoint) is truncated; an invalid batch below the
 *      durable point stops the partition with ERR_CORRUPT. Recovery reads at most one segment.
 *
 * State machine: OPEN --append/flush--> OPEN; OPEN --I/O error (partition_fail)--> FAILED;
 *   any --partition_close--> freed.
 * Threads: every function is thread-safe (one mutex per partition). Waiter callbacks run on the thread that
 *   calls partition_flush (the flusher), never inside the call that registered them.
 * Ownership: the caller owns batch bytes passed to append (patched in place) and waiter structs (which must
 *   stay valid until their callback runs). A log_range_t holds a segment reference until released.
 */
#ifndef FL_STORAGE_PARTITION_H
#define FL_STORAGE_PARTITION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/err.h"
#include "storage/io.h"

typedef struct partition partition_t;
typedef struct log_segment log_segment_t;

enum flush_policy { FLUSH_ALWAYS = 0, FLUSH_INTERVAL = 1, FLUSH_NEVER = 2 };

typedef struct {
	int64_t segment_bytes;        /* roll when the active segment would exceed this (default 1 GiB) */
	int64_t segment_ms;           /* roll when the active segment is older than this (default 7 days) */
	int64_t retention_bytes;      /* drop oldest segments beyond this total; -1 = unlimited (default) */
	int64_t retention_ms;         /* drop segments whose newest record is older; -1 = forever (7 days) */
	int32_t max_message_bytes;    /* largest batch accepted (default 1 MiB + 12 bytes, as Kafka) */
	int32_t index_interval_bytes; /* bytes between offset-index entries (default 4096) */
	int64_t preallocate_bytes;    /* reserve the active segment ahead in chunks of this; 0 = off (64 MiB) */
	bool log_append_time;         /* stamp batches with the broker's time (message.timestamp.type) */
	int flush_policy;             /* enum flush_policy (default FLUSH_ALWAYS) */
	int64_t flush_interval_ms;    /* for FLUSH_INTERVAL (default 1000) */
	int64_t checkpoint_interval_ms; /* how often the recovery point is persisted (default 1000) */
	/* Tiered storage (Kafka's names): sealed segments are copied to the archive (storage.c's archiver);
	 * then local retention may drop the archived ones. -2 = the same as retention.ms / retention.bytes. */
	bool remote_storage;          /* remote.storage.enable (default false) */
	int64_t local_retention_ms;   /* local.retention.ms (default -2) */
	int64_t local_retention_bytes; /* local.retention.bytes (default -2) */
} partition_config_t;

void partition_config_default(partition_config_t *cfg);

typedef struct partition_waiter partition_waiter_t;
typedef void (*partition_waiter_fn)(partition_waiter_t *w, err_t status);
struct partition_waiter {
	partition_waiter_t *next; /* owned by the partition while registered */
	int64_t offset;           /* complete once this offset is durable */
	partition_waiter_fn cb;
	void *arg;                /* for the caller */
};

typedef struct {
	io_t *io;
	const clock_src_t *clock;
	/* Called (with no partition lock held) when the partition has data to flush; the flusher then calls
	 * partition_flush. May be NULL (tests flush by hand). */
	void (*on_dirty)(void *arg, partition_t *p);
	void *on_dirty_arg;
	/* Called (no lock held) after the high watermark advanced. May be NULL. */
	void (*on_data)(void *arg, partition_t *p);
	void *on_data_arg;
	/* Counters to feed (appends, fsync latency); may be NULL. */
	struct partition_stats *stats;
} partition_env_t;

/* What a partition reports; storage.h's storage_stats_t starts with exactly these fields. */
struct partition_stats;
void partition_stats_append(struct partition_stats *s, size_t bytes, int32_t records);
void partition_stats_fsync(struct partition_stats *s, int64_t ns);

typedef struct {
	int64_t base_offset, last_offset;
	int64_t log_append_time; /* -1 unless the partition stamped the batch */
	int64_t log_start;
	bool duplicate; /* an idempotent producer's retry: nothing appended, the original offsets returned */
	bool ack_now; /* the ack need not wait (already durable, or the policy does not wait for fsync);
		       * then the waiter, if any, was not registered */
} partition_append_t;

/* A run of whole batches inside one segment file. */
typedef struct {
	log_segment_t *seg; /* a reference; release with log_range_release */
	int fd;
	int64_t pos, len;
	int64_t first_offset; /* base offset of the first batch */
	int64_t next_offset;  /* offset after the last batch: where the next read starts */
} log_range_t;

typedef struct {
	int64_t log_start, log_end, hwm, durable_end; /* log_start: the archive's start when it reaches further */
	int64_t local_log_start;                        /* the first offset in a local segment */
	int64_t archived_segments, archived_start, archived_end; /* the archive's list; -1 when empty */
	int64_t size_bytes;
	int segments;
	int64_t flushes; /* group-commit rounds that synced data (fdatasync calls on the active segment) */
	err_t failed;    /* OK unless FAILED */
} partition_info_t;

/* Opens (creating if needed) the partition in dir, recovering it from disk. The env is copied. */
err_t partition_open(const partition_env_t *env, const char *dir, const partition_config_t *cfg,
		     partition_t **out);
/* Flushes, seals the active segment (a clean shutdown), completes or fails waiters, frees everything. */
void partition_close(partition_t *p);

/* Closes without flushing or sealing: for a partition whose files are being deleted. */
void partition_discard(partition_t *p);

/* Validates a producer's batch (rb_validate; compressed records are decompressed and walked too),
 * applies the idempotent-producer rules (producers.h; a
 * duplicate returns the original offsets with res->duplicate, ERR_SEQUENCE / ERR_FENCED refuse it),
 * assigns offsets by patching it in place, and appends it.
 * With w non-NULL and the data not yet durable, w is registered for the batch's last offset and
 * res->durable is false; its callback runs later. On error nothing was appended and w is not registered. */
err_t partition_append(partition_t *p, uint8_t *batch, size_t len, partition_waiter_t *w,
		       partition_append_t *res);
/* Registers w to complete once offset is durable. Returns 1 if it already is (w not registered), 0 when
 * registered, or an error. */
int partition_wait(partition_t *p, int64_t offset, partition_waiter_t *w);
/* One group-commit round: fdatasync everything appended so far, complete the waiters it covers, seal
 * rolled segments, preallocate, and persist the recovery point when due. Thread: the flusher. */
err_t partition_flush(partition_t *p);
/* Deletes whole segments beyond the retention limits; returns the number deleted or an error. */
int partition_apply_retention(partition_t *p);

/* Whole batches from the one containing offset, up to max_bytes (but at least one batch) within one
 * segment, below the high watermark. An offset in [hwm, log_end] gives an empty range (len 0): the data
 * is written but not yet durable, or not written yet; outside [log_start, log_end] is ERR_OUT_OF_RANGE. */
err_t partition_read(partition_t *p, int64_t offset, int64_t max_bytes, log_range_t *out);
/* The same, for an event loop: below the local segments it never waits for the archive's network; when the
 * segment is not local yet it returns ERR_AGAIN, having started to get it (see archive_fetch_fn). */
err_t partition_read_nowait(partition_t *p, int64_t offset, int64_t max_bytes, log_range_t *out);
void log_range_release(log_range_t *r);
/* Copies a range's bytes into buf (which must hold r->len bytes). */
err_t log_range_copy(const log_range_t *r, io_t *io, void *buf);

/* The first offset with timestamp >= ts (-1 and ts -1 if none, as Kafka answers). */
err_t partition_offset_for_time(partition_t *p, int64_t ts, int64_t *offset, int64_t *found_ts);
/* The same, for an event loop: ERR_AGAIN when an archived segment it must look into is not local yet
 * (having started to get it, as partition_read_nowait). */
err_t partition_offset_for_time_nowait(partition_t *p, int64_t ts, int64_t *offset, int64_t *found_ts);
void partition_info(partition_t *p, partition_info_t *info);
void partition_set_config(partition_t *p, const partition_config_t *cfg);
const char *partition_dir(const partition_t *p);

/* Stops a partition whose topic is being deleted: later appends, flushes and reads fail with ERR_FAILED
 * and nothing touches its directory by path again. Quiet (not an I/O failure). */
void partition_retire(partition_t *p);

/* --- the archive (tiered storage): segments older than the local ones, served from elsewhere --- */

/* One archived segment: offsets [base, next), its .log size and newest timestamp. */
typedef struct {
	int64_t base, next, size, max_ts;
} archived_seg_t;

/* Makes an archived segment readable: writes into dir (capacity cap) a local directory that holds its
 * <base>.log, .index and .timeindex (the archive itself, or a cache it downloaded them into). Called with
 * no partition lock held; may block on the network, unless `nowait`: then, when the files are not local,
 * it starts getting them in the background and returns ERR_AGAIN (the storage's data hooks run once
 * they are there, or once getting them failed: the next call without waiting reports that error). */
typedef err_t (*archive_fetch_fn)(void *arg, const archived_seg_t *seg, bool nowait, char *dir, size_t cap);
/* Ends what a successful fetch of the segment at base began (the files may leave a cache again): called
 * once per successful fetch, when the segment opened from them is closed (or could not be opened). */
typedef void (*archive_release_fn)(void *arg, int64_t base);

/* Replaces the partition's list of archived segments (copied; sorted, contiguous) and the function that
 * fetches them. From then on reads and offset-for-time lookups below the local log start are served from
 * them, log_start reports the first archived offset, and local retention may drop local segments that the
 * list covers (remote_storage). n = 0 forgets the archive. */
void partition_set_archive(partition_t *p, const archived_seg_t *segs, size_t n, archive_fetch_fn fetch,
			   archive_release_fn release, void *arg);
/* The archived list's end (next offset after it), or -1 when nothing is archived. */
int64_t partition_archived_end(partition_t *p);
/* The sealed local segments (index files written, not being rolled) at or after offset `from`, oldest
 * first, into *out (malloc'd; the caller frees). Returns the count. For the archiver. */
size_t partition_sealed_segments(partition_t *p, int64_t from, archived_seg_t **out);

/* Marks the partition FAILED with cause err (for tests and for callers that saw an I/O error). */
void partition_fail(partition_t *p, err_t err);

#endif
