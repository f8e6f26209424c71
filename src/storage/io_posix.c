/* io_posix.c -- io_t on the real file system, and helpers shared by every io_t. */
#include "storage/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/compat.h"
#include "core/fl_assert.h"

static int px_open(io_t *io, const char *path, int flags, int mode)
{
	(void)io;
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int px_close(io_t *io, int fd)
{
	(void)io;
	return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t px_pwrite(io_t *io, int fd, const void *buf, size_t len, int64_t off)
{
	(void)io;
	ssize_t n;
	do
		n = pwrite(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t px_pread(io_t *io, int fd, void *buf, size_t len, int64_t off)
{
	(void)io;
	ssize_t n;
	do
		n = pread(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int px_fdatasync(io_t *io, int fd)
{
	(void)io;
	/* Not retried on EINTR or anything else: after a failed flush the page state is unknown. */
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int px_ftruncate(io_t *io, int fd, int64_t len)
{
	(void)io;
	int rc;
	do
		rc = ftruncate(fd, (off_t)len);
	while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : 0;
}

static int px_fallocate(io_t *io, int fd, int64_t off, int64_t len)
{
	(void)io;
	int rc;
	do
		rc = fallocate(fd, 0, (off_t)off, (off_t)len);
	while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : 0;
}

static int px_fsize(io_t *io, int fd, int64_t *size)
{
	(void)io;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

static int px_unlink(io_t *io, const char *path)
{
	(void)io;
	return unlink(path) < 0 ? -errno : 0;
}

static int px_rename(io_t *io, const char *from, const char *to)
{
	(void)io;
	return rename(from, to) < 0 ? -errno : 0;
}

static int px_mkdir(io_t *io, const char *path)
{
	(void)io;
	return mkdir(path, 0755) < 0 ? -errno : 0;
}

static int px_rmdir(io_t *io, const char *path)
{
	(void)io;
	return rmdir(path) < 0 ? -errno : 0;
}

static int px_list(io_t *io, const char *dir, io_list_fn fn, void *arg)
{
	(void)io;
	DIR *d = opendir(dir);
	if (d == NULL)
		return -errno;
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = fn(arg, de->d_name);
	}
	closedir(d);
	return rc < 0 ? rc : 0;
}

static int px_fsync_dir(io_t *io, const char *dir)
{
	(void)io;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static io_t posix_io = {
	px_open, px_close, px_pwrite, px_pread, px_fdatasync, px_ftruncate, px_fallocate,
	px_fsize, px_unlink, px_rename, px_mkdir, px_rmdir, px_list, px_fsync_dir,
};

io_t *io_posix(void)
{
	return &posix_io;
}

err_t io_pwrite_all(io_t *io, int fd, const void *buf, size_t len, int64_t off)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = io->pwrite(io, fd, p, len, off);
		if (n < 0)
			return (err_t)n;
		if (n == 0)
			return ERR_SYS(EIO);
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return OK;
}

err_t io_pread_all(io_t *io, int fd, void *buf, size_t len, int64_t off)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = io->pread(io, fd, p, len, off);
		if (n < 0)
			return (err_t)n;
		if (n == 0)
			return ERR_INCOMPLETE;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return OK;
}

err_t io_write_file_atomic(io_t *io, const char *dir, const char *name, const void *data, size_t len)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name) >= (int)sizeof tmp ||
	    snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return ERR_SYS(ENAMETOOLONG);
	int fd = io->open(io, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	err_t rc = io_pwrite_all(io, fd, data, len, 0);
	if (rc == OK)
		rc = io->fdatasync(io, fd);
	io->close(io, fd);
	if (rc == OK)
		rc = io->rename(io, tmp, path);
	if (rc == OK)
		rc = io->fsync_dir(io, dir);
	if (rc != OK)
		io->unlink(io, tmp);
	return rc;
}

typedef struct {
	io_t *io;
	const char *dir;
	err_t rc;
} rm_ctx_t;

static int rm_entry(void *arg, const char *name)
{
	rm_ctx_t *c = arg;
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", c->dir, name) >= (int)sizeof path) {
		c->rc = ERR_SYS(ENAMETOOLONG);
		return 0;
	}
	err_t rc = c->io->unlink(c->io, path);
	if (rc == ERR_SYS(EISDIR) || rc == ERR_SYS(EPERM))
		rc = io_remove_tree(c->io, path);
	if (rc != OK && c->rc == OK)
		c->rc = rc;
	return 0;
}

err_t io_remove_tree(io_t *io, const char *path)
{
	rm_ctx_t c = { io, path, OK };
	err_t rc = io->list(io, path, rm_entry, &c);
	if (rc == ERR_SYS(ENOENT))
		return OK;
	if (rc != OK)
		return rc;
	if (c.rc != OK)
		return c.rc;
	return io->rmdir(io, path);
}
