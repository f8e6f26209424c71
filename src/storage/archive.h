/*
 * archive.h -- where sealed segments go to outlive local retention: a directory, or an S3-compatible
 * object store (path-style URLs, SigV4 signing through libcurl).
 *
 * Purpose: a small object store interface for the archiver in storage.c: put a file or bytes under a key,
 * get bytes, delete, and hand readers a local directory that holds an archived segment's files (the
 * archive's own directory, or a cache the files were downloaded into).
 * Keys are relative paths ("topic-1700000000000/3/00000000000000001000.log"); the directory backend
 * stores KEY under its root, the S3 backend under s3://BUCKET/PREFIX/KEY.
 * Invariants:
 *   1. A put is durable when it returns OK: the directory backend writes KEY.tmp, fsyncs it, renames it
 *      and fsyncs the directory; S3 answered 2xx. A reader never sees a partial object.
 *   2. archive_local_dir only returns a directory whose files are complete (downloads go through
 *      temporary names and a rename).
 *   3. S3: the download cache holds at most cache_bytes_max bytes, evicting the least recently used files
 *      first, but never a file in use (between archive_local_dir and archive_local_done): while files in
 *      use alone exceed the limit, it stays above it (logged) and shrinks as they are released. What an
 *      earlier run left in the cache is indexed (and trimmed) at archive_open.
 * Threads: every function is thread-safe (the only mutable state is the cache's index, under a mutex, and
 *   its files, which are written atomically). Calls block on disk and network I/O.
 * Ownership: archive_open copies the options' strings; the caller frees the archive with archive_close.
 */
#ifndef FL_STORAGE_ARCHIVE_H
#define FL_STORAGE_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct archive archive_t;

typedef struct {
	const char *location;    /* a directory, or s3://BUCKET[/PREFIX] */
	const char *s3_endpoint; /* e.g. http://127.0.0.1:9000; default https://s3.REGION.amazonaws.com */
	const char *s3_region;   /* default us-east-1 */
	const char *access_key;  /* default $AWS_ACCESS_KEY_ID */
	const char *secret_key;  /* default $AWS_SECRET_ACCESS_KEY */
	const char *cache_dir;   /* S3 only: where segments are downloaded to be read */
	int64_t cache_bytes_max; /* S3 only: the cache's size limit; 0: ARCHIVE_CACHE_BYTES_DEFAULT */
} archive_opts_t;

#define ARCHIVE_CACHE_BYTES_DEFAULT ((int64_t)1 << 30)

/* Checks the options (and, for a directory, creates it). On error, err names the problem. */
err_t archive_open(const archive_opts_t *o, archive_t **out, char *err, size_t errcap);
void archive_close(archive_t *a);
/* From now on S3 requests fail with ECANCELED, and those in progress abort within about a second (a
 * closing storage must not wait out a slow or hung store). The directory backend is unaffected: its calls
 * are local. */
void archive_cancel(archive_t *a);
bool archive_cancelled(const archive_t *a);
/* "directory /x/y" or "s3://bucket/prefix at http://host:port": for logs and the CLI. */
const char *archive_describe(const archive_t *a);

err_t archive_put_file(archive_t *a, const char *key, const char *path);
err_t archive_put_bytes(archive_t *a, const char *key, const void *data, size_t len);
/* Replaces out's contents with the object's bytes; ERR_NOT_FOUND when there is none. */
err_t archive_get_bytes(archive_t *a, const char *key, buf_t *out);
/* Deletes an object; a missing one is not an error. */
err_t archive_delete(archive_t *a, const char *key);
/* Deletes every object whose key starts with PREFIX/ (prefix: one path component, e.g. "topic-1700000000000"),
 * and, for S3, its copies in the download cache; *deleted counts the objects. The directory backend
 * removes ROOT/PREFIX; S3 lists the keys (ListObjectsV2) and deletes each, so objects no manifest lists
 * (an upload whose manifest was never written) go too. Nothing under the prefix is left when it returns OK;
 * on error some may be, and calling it again finishes. */
err_t archive_delete_prefix(archive_t *a, const char *prefix, size_t *deleted);
/* Writes into dir a local directory holding PREFIX/NAME for every name in names (downloading what is
 * missing from the cache first, for S3). On OK the files are in use (pinned) until archive_local_done with
 * the same prefix and names: the cache never evicts them before. */
err_t archive_local_dir(archive_t *a, const char *prefix, const char *const *names, int nnames, char *dir,
			size_t cap);
/* archive_local_dir without downloading: true when every file is local (always, for a directory), and then
 * they are pinned as archive_local_dir pins them (all at once: none can be evicted between the check and the
 * pin); false, with nothing pinned, when any is missing. */
bool archive_local_try(archive_t *a, const char *prefix, const char *const *names, int nnames, char *dir,
		       size_t cap);
/* Ends the use archive_local_dir began. */
void archive_local_done(archive_t *a, const char *prefix, const char *const *names, int nnames);
/* Bytes in the S3 download cache (0 for a directory). */
int64_t archive_cache_bytes(archive_t *a);

#endif
