/*
 * meta.h -- the broker's small transactional store: topics, partition counts and topic configs (later:
 * committed group offsets). SQLite in WAL mode with synchronous=FULL: a committed change survives a crash.
 *
 * Decision (DESIGN.md asked for one): metadata lives in SQLite, not in an internal compacted topic. It is
 * tiny, changes rarely, needs transactions across rows, and SQLite is the best-tested embedded store.
 * Threads: one connection opened in serialized mode; every call is thread-safe.
 * Ownership: strings passed to callbacks live only during the callback.
 */
#ifndef FL_STORAGE_META_H
#define FL_STORAGE_META_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

typedef struct meta meta_t;

typedef struct {
	const char *key, *value;
} meta_kv_t;

err_t meta_open(const char *path, meta_t **out);
void meta_close(meta_t *m);

/* Creates a topic with its configs in one transaction; ERR_EXISTS if it exists. */
err_t meta_topic_create(meta_t *m, const char *name, int32_t partitions, int64_t created_ms,
			const meta_kv_t *configs, int nconfigs);
err_t meta_topic_set_partitions(meta_t *m, const char *name, int32_t partitions);
/* Deletes a topic and its configs; ERR_NOT_FOUND if absent. With archive_prefix (its archive's key prefix,
 * "TOPIC-CREATEDMS"), the same transaction records that prefix as to be deleted from the archive. */
err_t meta_topic_delete(meta_t *m, const char *name, const char *archive_prefix);
/* Archive prefixes of deleted topics whose objects are still to be deleted, oldest first. */
typedef void (*meta_prefix_fn)(void *arg, const char *prefix);
err_t meta_archive_deletion_list(meta_t *m, meta_prefix_fn fn, void *arg);
/* The prefix's objects are deleted: forget it. */
err_t meta_archive_deletion_done(meta_t *m, const char *prefix);
/* Whether the prefix awaits deletion (a topic re-created within the same millisecond must not share it). */
bool meta_archive_deletion_pending(meta_t *m, const char *prefix);
/* Sets (value non-NULL) or removes (value NULL) one config of a topic. */
err_t meta_config_set(meta_t *m, const char *topic, const char *key, const char *value);

/* Adds delta to a named counter (created at 0) and returns the value before, durably. */
err_t meta_counter_add(meta_t *m, const char *name, int64_t delta, int64_t *before);

/* Committed consumer-group offsets (Kafka OffsetCommit): one row per (group, topic, partition). */
err_t meta_offset_commit(meta_t *m, const char *group, const char *topic, int32_t partition, int64_t offset,
			 const char *metadata, int64_t commit_ms);
typedef void (*meta_offset_fn)(void *arg, const char *group, const char *topic, int32_t partition,
			       int64_t offset, const char *metadata, int64_t commit_ms);
err_t meta_offset_list(meta_t *m, meta_offset_fn fn, void *arg);
err_t meta_group_delete(meta_t *m, const char *group);

typedef void (*meta_topic_fn)(void *arg, const char *name, int32_t partitions, int64_t created_ms);
typedef void (*meta_config_fn)(void *arg, const char *key, const char *value);
err_t meta_topic_list(meta_t *m, meta_topic_fn fn, void *arg);
err_t meta_config_list(meta_t *m, const char *topic, meta_config_fn fn, void *arg);

#endif
