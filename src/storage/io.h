/*
 * io.h -- the file-system interface of the storage engine.
 *
 * Purpose: storage does all of its file I/O through an io_t, so crash tests can run the real engine on a
 * simulated disk (io_sim.c) that loses or tears unsynced writes, as SQLite's test6.c does.
 * Contract (both implementations):
 *   - Every call returns >= 0 on success or a negative err_t (-errno for system errors).
 *   - Descriptors are small non-negative ints owned by the caller until io->close().
 *   - Data written with pwrite() is durable only after fdatasync() on that descriptor returns 0.
 *     A created, renamed or unlinked name is durable only after fsync_dir() on its directory.
 *   - fdatasync() failure is reported once; callers must treat it as fatal (never retry it).
 * Threads: io_posix is safe from any thread; io_sim serialises calls with its own mutex.
 * Ownership: io_posix() returns a shared immutable object; io_sim objects are created and freed by tests.
 */
#ifndef FL_STORAGE_IO_H
#define FL_STORAGE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"

typedef struct io io_t;

/* Called once per directory entry name (not "." or ".."); a nonzero return stops the listing. */
typedef int (*io_list_fn)(void *arg, const char *name);

struct io {
	int (*open)(io_t *io, const char *path, int flags, int mode);
	int (*close)(io_t *io, int fd);
	ssize_t (*pwrite)(io_t *io, int fd, const void *buf, size_t len, int64_t off);
	ssize_t (*pread)(io_t *io, int fd, void *buf, size_t len, int64_t off);
	int (*fdatasync)(io_t *io, int fd);
	int (*ftruncate)(io_t *io, int fd, int64_t len);
	int (*fallocate)(io_t *io, int fd, int64_t off, int64_t len); /* may return -EOPNOTSUPP */
	int (*fsize)(io_t *io, int fd, int64_t *size);
	int (*unlink)(io_t *io, const char *path);
	int (*rename)(io_t *io, const char *from, const char *to);
	int (*mkdir)(io_t *io, const char *path); /* -EEXIST when it exists */
	int (*rmdir)(io_t *io, const char *path);
	int (*list)(io_t *io, const char *dir, io_list_fn fn, void *arg);
	int (*fsync_dir)(io_t *io, const char *dir);
};

/* The real file system (POSIX calls, EINTR retried, short writes completed). Shared, immutable. */
io_t *io_posix(void);

/* Writes all of buf at off, or fails: a short write is completed or reported as an error. */
err_t io_pwrite_all(io_t *io, int fd, const void *buf, size_t len, int64_t off);
/* Reads exactly len bytes at off; ERR_INCOMPLETE if the file ends first. */
err_t io_pread_all(io_t *io, int fd, void *buf, size_t len, int64_t off);
/* Writes data to path atomically: path.tmp, fdatasync, rename, fsync of the directory. */
err_t io_write_file_atomic(io_t *io, const char *dir, const char *name, const void *data, size_t len);
/* Removes a directory tree (files and subdirectories). */
err_t io_remove_tree(io_t *io, const char *path);

#endif
