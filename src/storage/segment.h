/*
 * segment.h -- one segment of a partition: a .log file of RecordBatch v2 batches, a sparse offset index
 * (.index) and a time index (.timeindex). Internal to storage/: only partition.c uses it.
 *
 * Files: <dir>/<base offset, 20 digits>.log|.index|.timeindex.
 *   .log        batches back to back from byte 0; bytes past `size` are preallocated zeros.
 *   .index      entries {u32 relative base offset, u32 position} then a trailer (see SEG_TRAILER_LEN) that
 *               summarises the sealed segment: log size, next offset, max timestamp, entry CRC.
 *   .timeindex  entries {i64 running max timestamp, u32 relative base offset} then {u32 count, u32 crc}.
 * Invariants:
 *   1. Batches are dense: each batch's base offset = the previous batch's last offset + 1, and the first
 *      batch's base offset = `base`.
 *   2. Index entries are strictly increasing in both fields and point at batch starts below `size`.
 *   3. A segment is sealed only after its .log is truncated to `size` and fsynced; index files are written
 *      only for sealed segments, so an index file whose trailer matches the .log size is trustworthy.
 *   4. The active segment has no index files on disk: a crash rebuilds its index by scanning it.
 * Ownership and threads: the partition's mutex protects every mutable field; `fd`, `base` and the index
 *   arrays of a sealed, loaded segment are immutable. `refs` counts the partition's own reference plus
 *   readers holding a log_range_t; the last unref closes the fd and, for a deleted segment, unlinks files.
 */
#ifndef FL_STORAGE_SEGMENT_H
#define FL_STORAGE_SEGMENT_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "storage/io.h"
#include "storage/recordbatch.h"

typedef struct {
	uint32_t rel_offset;
	uint32_t pos;
} seg_idx_t;

typedef struct {
	int64_t ts;
	uint32_t rel_offset;
} seg_tidx_t;

typedef struct log_segment {
	io_t *io;
	char *dir;     /* owned copy of the partition directory */
	char name[24]; /* the base offset as 20 digits */
	int64_t base;
	int fd;
	int64_t size;        /* bytes of valid batches */
	int64_t alloc;       /* bytes the file is known to span (preallocated) */
	int64_t zeroed;      /* [size, zeroed) holds zeros written for real, not just reserved (partition.c) */
	int64_t next_offset; /* last offset + 1; == base when empty */
	int64_t max_ts;      /* largest batch max timestamp; -1 when empty */
	int64_t max_ts_rel;  /* relative base offset of the batch that holds max_ts */
	int64_t created_ms;  /* wall time the segment became active in this process (roll by age) */
	seg_idx_t *idx;
	size_t nidx, capidx;
	seg_tidx_t *tidx;
	size_t ntidx, captidx;
	int64_t idx_last_pos, tidx_last_pos;
	bool index_loaded; /* false for a sealed segment whose index files are not read yet */
	bool sealed;       /* read-only; index files on disk */
	bool seal_pending; /* rolled: the flusher must truncate, fsync and write its index */
	bool unsynced;     /* appended to since the last fdatasync */
	bool dir_synced;   /* its directory entry is durable */
	bool deleted;      /* removed by retention or topic deletion: unlink at the last unref */
	atomic_int refs;
	/* called at the last unref, before the segment is freed (an archived segment ends its use of the
	 * archive's cached files); NULL for none */
	void (*on_free)(void *arg, int64_t base);
	void *on_free_arg;
} log_segment_t;

/* Result of scanning a segment's batches. */
typedef struct {
	int64_t end_pos;     /* position after the last valid batch */
	int64_t next_offset; /* offset after the last valid batch */
	int64_t bad_pos;     /* position of the first invalid batch, or -1 */
	err_t bad_err;       /* why it was invalid */
} seg_scan_t;

/* Creates a new empty segment file (truncating a leftover with that name). */
err_t segment_create(io_t *io, const char *dir, int64_t base, log_segment_t **out);
/* Opens an existing segment; reads the index trailer. *sealed_ok tells whether the trailer is valid and
 * matches the .log size, in which case size/next_offset/max_ts are known without scanning. */
err_t segment_open(io_t *io, const char *dir, int64_t base, log_segment_t **out, bool *sealed_ok);
/* Scans batches from position 0, CRC-checking each, rebuilding the in-memory indexes, and stops at the
 * first invalid batch or the end of the file. Fills size, next_offset and max_ts from what was valid. */
err_t segment_scan(log_segment_t *seg, int index_interval, seg_scan_t *res);
/* Appends a batch (already patched) at `size`. On error nothing is counted; a partial write is undone
 * (truncated) where possible and *partial_left tells if garbage may remain past size. */
err_t segment_append(log_segment_t *seg, const uint8_t *batch, size_t len, const rb_header_t *h,
		     int index_interval, bool *partial_left);
/* Loads a sealed segment's index files, rebuilding them by a scan if missing or corrupt. */
err_t segment_load_index(log_segment_t *seg, int index_interval);
/* Index lookups; the caller holds the partition lock (the active segment's arrays grow on append). */
/* A batch-start position at or before the batch containing offset (scan from there). */
int64_t segment_index_floor(const log_segment_t *seg, int64_t offset);
/* The last indexed batch start in (after_pos, want_pos] and <= limit_pos, with its base offset; false if
 * none. Every batch before it ends there, so a range may jump to it without reading headers. */
bool segment_index_jump(const log_segment_t *seg, int64_t after_pos, int64_t want_pos, int64_t limit_pos,
			int64_t *pos, int64_t *base_offset);

/* Header scans; pread only, no lock needed. */
/* From start_pos, the position and base offset of the batch containing offset, below limit_pos. */
err_t segment_seek(log_segment_t *seg, int64_t start_pos, int64_t offset, int64_t limit_pos, int64_t *pos,
		   int64_t *base_offset);
/* Adds whole batches from *end_pos while they end at or before want_pos and limit_pos, advancing *end_pos
 * and *next_offset; with force_first the first batch is added even if it ends past want_pos. */
err_t segment_extend(log_segment_t *seg, int64_t *end_pos, int64_t *next_offset, int64_t want_pos,
		     int64_t limit_pos, bool force_first);
/* The first offset whose timestamp >= ts, or ERR_NOT_FOUND; *found_ts gets its timestamp. Lock held. */
err_t segment_find_time(log_segment_t *seg, int64_t ts, int64_t limit_pos, int64_t *offset, int64_t *found_ts);
/* Completes the time index with the segment's final maximum (at roll or close; lock held). */
void segment_close_index(log_segment_t *seg);
/* Truncates the .log to size and fsyncs it (the first half of sealing). */
err_t segment_finish_log(log_segment_t *seg);
/* Writes the index files (atomically, fsynced): the second half of sealing. Reads the index arrays only,
 * so it may run without the lock once the segment takes no appends. */
err_t segment_write_index(log_segment_t *seg, const char *dir);
/* Removes the index files of a segment that becomes active again. */
void segment_drop_index_files(log_segment_t *seg);
/* Discards everything at and after pos (a torn tail): truncates the file. */
err_t segment_truncate(log_segment_t *seg, int64_t pos);

void segment_ref(log_segment_t *seg);
void segment_unref(log_segment_t *seg);

#endif
