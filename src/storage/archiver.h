/*
 * archiver.h -- tiered storage: copies sealed segments of topics with remote.storage.enable=true to the
 * archive (archive.h), keeps each partition's manifest, and lets partitions read below their local log
 * start from it.
 *
 * Archive layout, per partition: KEY = TOPIC-CREATEDMS/PARTITION/ (the topic's creation time keeps a
 * re-created topic away from its predecessor's archive), holding each archived segment's
 * <base>.log, .index and .timeindex, and `manifest`: a text object
 *     factlog-archive-manifest 1
 *     BASE NEXT SIZE MAX_TS          (one line per segment, oldest first, contiguous)
 * Invariants:
 *   1. A segment is listed in the manifest only after its three files are durable in the archive, and a
 *      partition learns of it (partition_set_archive) only after the manifest is: local retention never
 *      drops a segment that is not safe in the archive.
 *   2. The archive drops segments beyond the topic's total retention (retention.ms / retention.bytes)
 *      from the manifest first, then deletes their objects.
 *   3. One thread (the archiver's) writes manifests; storage_open loads them before serving.
 *   4. Deleting a topic records its prefix in the metadata store in the deletion's transaction; a pass
 *      then deletes every object under it (listing the archive, so unlisted uploads go too) and only then
 *      forgets the prefix: a restart or an unreachable archive delays the deletion, never loses it. The
 *      prefix holds the creation time, and storage_topic_create never reuses a prefix awaiting deletion,
 *      so a re-created topic never sees its predecessor's archive.
 *   5. A reader that does not wait (partition_read_nowait: the Kafka loops) never downloads: a get thread
 *      does, into the archive's cache, and then runs the storage's data hooks so the reader asks again.
 * Threads: archiver_start runs one thread for passes and four for downloads; archiver_stop joins them.
 * Ownership: the storage owns the archiver; partitions borrow its per-partition state until archiver_free,
 *   after they closed.
 */
#ifndef FL_STORAGE_ARCHIVER_H
#define FL_STORAGE_ARCHIVER_H

#include <stdint.h>

#include "core/err.h"
#include "storage/archive.h"
#include "storage/meta.h"
#include "storage/storage.h"

typedef struct archiver archiver_t;

/* Loads the manifests of the topics with remote storage (so reads below local retention work at once),
 * then starts the thread, which makes a pass every check_ms. Takes over the archive; borrows meta (the
 * deleted topics' archives still to delete). */
err_t archiver_start(storage_t *st, meta_t *meta, archive_t *a, int64_t check_ms, archiver_t **out);
/* One pass now, on the caller's thread (tests): archive every remote-storage topic, then delete the
 * archives of deleted topics. */
void archiver_pass(archiver_t *ar);
/* Asks the thread for a pass now (a topic was deleted). NULL: nothing. */
void archiver_wake(archiver_t *ar);
/* A topic's archive key prefix, TOPIC-CREATEDMS (meta_topic_delete records it for deletion). */
void archiver_topic_prefix(const char *topic, int64_t created_ms, char *out, size_t cap);
/* Cancels S3 requests in progress and fails later ones (archive_cancel): the server is stopping. NULL: nothing. */
void archiver_cancel(archiver_t *ar);
/* Stops the thread (before the partitions close); cancels first. */
void archiver_stop(archiver_t *ar);
/* Frees the state partitions borrowed (after they closed) and the archive. */
void archiver_free(archiver_t *ar);
/* Archive figures of one partition: segments archived and their offsets [start, end); -1 when none. */
void archiver_partition_info(archiver_t *ar, const char *topic, int32_t partition, int64_t *segments,
			     int64_t *start, int64_t *end);
const char *archiver_describe(const archiver_t *ar);

/* Parses a manifest (the text above): segments oldest first, contiguous, each with base >= 0, next > base
 * and size > 0. ERR_MALFORMED for anything else (nothing is returned then). *out is malloc'd. */
err_t archive_manifest_parse(const uint8_t *data, size_t len, archived_seg_t **out, size_t *n);

#endif
