/* io_sim.c -- the simulated disk. See io_sim.h. Linear searches: test disks hold few files. */
#include "storage/io_sim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/compat.h"
#include "core/fl_assert.h"

typedef struct {
	int is_trunc;
	int64_t off, len; /* for a truncation, len is the new size */
	uint8_t *data;
} sim_op_t;

typedef struct {
	char *path;
	uint8_t *cur, *dur;
	int64_t cur_len, dur_len, cur_cap;
	sim_op_t *ops;
	size_t nops, capops;
} sim_file_t;

struct io_sim {
	io_t io; /* first: io_t* <-> io_sim_t* */
	pthread_mutex_t mu;
	sim_file_t **files;
	size_t nfiles;
	char **dirs;
	size_t ndirs;
	sim_file_t **fds;
	size_t nfds;
	int crash_at, fail_at, crashed, syncs;
	int64_t space_limit;
};

/* memcpy that accepts NULL with a zero length (empty files have no buffer yet). */
static void copy_bytes(void *dst, const void *src, size_t n)
{
	if (n > 0)
		memcpy(dst, src, n);
}

static io_sim_t *SIM(io_t *io)
{
	return (io_sim_t *)io;
}

static sim_file_t *find_file(io_sim_t *s, const char *path, size_t *idx)
{
	for (size_t i = 0; i < s->nfiles; i++)
		if (strcmp(s->files[i]->path, path) == 0) {
			if (idx)
				*idx = i;
			return s->files[i];
		}
	return NULL;
}

static int find_dir(io_sim_t *s, const char *path)
{
	for (size_t i = 0; i < s->ndirs; i++)
		if (strcmp(s->dirs[i], path) == 0)
			return (int)i;
	return -1;
}

static int parent_exists(io_sim_t *s, const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL || slash == path)
		return 1;
	char *parent = strndup(path, (size_t)(slash - path));
	int ok = find_dir(s, parent) >= 0;
	free(parent);
	return ok;
}

static int64_t total_bytes(io_sim_t *s)
{
	int64_t t = 0;
	for (size_t i = 0; i < s->nfiles; i++)
		t += s->files[i]->cur_len;
	return t;
}

static void cur_resize(sim_file_t *f, int64_t len)
{
	if (len > f->cur_cap) {
		int64_t cap = f->cur_cap ? f->cur_cap : 4096;
		while (cap < len)
			cap *= 2;
		f->cur = realloc(f->cur, (size_t)cap);
		ASSERT(f->cur != NULL);
		f->cur_cap = cap;
	}
	if (len > f->cur_len)
		memset(f->cur + f->cur_len, 0, (size_t)(len - f->cur_len));
	f->cur_len = len;
}

static void op_push(sim_file_t *f, int is_trunc, int64_t off, int64_t len, const void *data)
{
	if (f->nops == f->capops) {
		f->capops = f->capops ? f->capops * 2 : 16;
		f->ops = realloc(f->ops, f->capops * sizeof *f->ops);
		ASSERT(f->ops != NULL);
	}
	sim_op_t *op = &f->ops[f->nops++];
	op->is_trunc = is_trunc;
	op->off = off;
	op->len = len;
	op->data = NULL;
	if (!is_trunc) {
		op->data = malloc((size_t)len + 1);
		ASSERT(op->data != NULL);
		copy_bytes(op->data, data, (size_t)len);
	}
}

static void ops_clear(sim_file_t *f)
{
	for (size_t i = 0; i < f->nops; i++)
		free(f->ops[i].data);
	f->nops = 0;
}

static void file_free(sim_file_t *f)
{
	ops_clear(f);
	free(f->ops);
	free(f->cur);
	free(f->dur);
	free(f->path);
	free(f);
}

static int fd_alloc(io_sim_t *s, sim_file_t *f)
{
	for (size_t i = 0; i < s->nfds; i++)
		if (s->fds[i] == NULL) {
			s->fds[i] = f;
			return (int)i;
		}
	s->fds = realloc(s->fds, (s->nfds + 1) * sizeof *s->fds);
	ASSERT(s->fds != NULL);
	s->fds[s->nfds] = f;
	return (int)s->nfds++;
}

static sim_file_t *fd_file(io_sim_t *s, int fd)
{
	if (fd < 0 || (size_t)fd >= s->nfds)
		return NULL;
	return s->fds[fd];
}

static int sim_open(io_t *io, const char *path, int flags, int mode)
{
	(void)mode;
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	int rc;
	sim_file_t *f = find_file(s, path, NULL);
	if (s->crashed) {
		rc = -EIO;
	} else if (f == NULL && !(flags & O_CREAT)) {
		rc = -ENOENT;
	} else if (f != NULL && (flags & O_CREAT) && (flags & O_EXCL)) {
		rc = -EEXIST;
	} else if (f == NULL && (!parent_exists(s, path) || find_dir(s, path) >= 0)) {
		rc = find_dir(s, path) >= 0 ? -EISDIR : -ENOENT;
	} else {
		if (f == NULL) {
			f = calloc(1, sizeof *f);
			ASSERT(f != NULL);
			f->path = strdup(path);
			s->files = realloc(s->files, (s->nfiles + 1) * sizeof *s->files);
			ASSERT(s->files != NULL);
			s->files[s->nfiles++] = f;
		}
		if (flags & O_TRUNC) {
			op_push(f, 1, 0, 0, NULL);
			cur_resize(f, 0);
		}
		rc = fd_alloc(s, f);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_close(io_t *io, int fd)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	int rc = fd_file(s, fd) ? 0 : -EBADF;
	if (rc == 0)
		s->fds[fd] = NULL;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static ssize_t sim_pwrite(io_t *io, int fd, const void *buf, size_t len, int64_t off)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = fd_file(s, fd);
	ssize_t rc = (ssize_t)len;
	int64_t end = off + (int64_t)len;
	if (f == NULL) {
		rc = -EBADF;
	} else if (s->crashed) {
		rc = -EIO;
	} else if (s->space_limit && end > f->cur_len && total_bytes(s) + (end - f->cur_len) > s->space_limit) {
		/* Like a real file system, fill what fits, then fail. */
		int64_t max_end = f->cur_len + (s->space_limit - total_bytes(s));
		if (max_end <= off) {
			rc = -ENOSPC;
		} else {
			rc = (ssize_t)(max_end - off);
			end = max_end;
		}
	}
	if (rc > 0) {
		if (end > f->cur_len)
			cur_resize(f, end);
		copy_bytes(f->cur + off, buf, (size_t)rc);
		op_push(f, 0, off, rc, buf);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static ssize_t sim_pread(io_t *io, int fd, void *buf, size_t len, int64_t off)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = fd_file(s, fd);
	ssize_t rc;
	if (f == NULL)
		rc = -EBADF;
	else if (s->crashed)
		rc = -EIO;
	else if (off >= f->cur_len)
		rc = 0;
	else {
		int64_t n = f->cur_len - off < (int64_t)len ? f->cur_len - off : (int64_t)len;
		copy_bytes(buf, f->cur + off, (size_t)n);
		rc = (ssize_t)n;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static void make_durable(sim_file_t *f)
{
	free(f->dur);
	f->dur = malloc((size_t)f->cur_len + 1);
	ASSERT(f->dur != NULL);
	copy_bytes(f->dur, f->cur, (size_t)f->cur_len);
	f->dur_len = f->cur_len;
	ops_clear(f);
}

static int sim_fdatasync(io_t *io, int fd)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = fd_file(s, fd);
	int rc = 0;
	if (f == NULL) {
		rc = -EBADF;
	} else if (s->crashed) {
		rc = -EIO;
	} else if (s->crash_at > 0 && --s->crash_at == 0) {
		s->crashed = 1;
		rc = -EIO;
	} else if (s->fail_at > 0 && --s->fail_at == 0) {
		rc = -EIO;
	} else {
		make_durable(f);
		s->syncs++;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_ftruncate(io_t *io, int fd, int64_t len)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = fd_file(s, fd);
	int rc = 0;
	if (f == NULL)
		rc = -EBADF;
	else if (s->crashed)
		rc = -EIO;
	else if (s->space_limit && len > f->cur_len && total_bytes(s) + len - f->cur_len > s->space_limit)
		rc = -ENOSPC;
	else {
		op_push(f, 1, 0, len, NULL);
		cur_resize(f, len);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_fallocate(io_t *io, int fd, int64_t off, int64_t len)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = fd_file(s, fd);
	int64_t end = off + len;
	int rc = 0;
	if (f == NULL)
		rc = -EBADF;
	else if (s->crashed)
		rc = -EIO;
	else if (end <= f->cur_len)
		rc = 0;
	else if (s->space_limit && total_bytes(s) + end - f->cur_len > s->space_limit)
		rc = -ENOSPC;
	else {
		/* An extension with zeros: modelled as a truncation that grows the file. */
		op_push(f, 1, 0, end, NULL);
		cur_resize(f, end);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_fsize(io_t *io, int fd, int64_t *size)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = fd_file(s, fd);
	int rc = f ? 0 : -EBADF;
	if (f)
		*size = f->cur_len;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_unlink(io_t *io, const char *path)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	size_t idx;
	int rc = 0;
	sim_file_t *f = find_file(s, path, &idx);
	if (s->crashed)
		rc = -EIO;
	else if (f == NULL)
		rc = find_dir(s, path) >= 0 ? -EISDIR : -ENOENT;
	else {
		for (size_t i = 0; i < s->nfds; i++)
			if (s->fds[i] == f)
				rc = -EBUSY; /* the sim keeps it simple: callers close before unlinking */
		if (rc == 0) {
			s->files[idx] = s->files[--s->nfiles];
			file_free(f);
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_rename(io_t *io, const char *from, const char *to)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	size_t idx, idx2;
	sim_file_t *f = find_file(s, from, &idx);
	int d = find_dir(s, from);
	if (s->crashed) {
		rc = -EIO;
	} else if (f != NULL) {
		sim_file_t *g = find_file(s, to, &idx2);
		if (g != NULL) {
			s->files[idx2] = s->files[--s->nfiles];
			file_free(g);
		}
		free(f->path);
		f->path = strdup(to);
	} else if (d >= 0) {
		/* Move the directory and everything under it. */
		size_t fl = strlen(from);
		for (size_t i = 0; i < s->ndirs; i++) {
			char *p = s->dirs[i];
			if (strncmp(p, from, fl) == 0 && (p[fl] == 0 || p[fl] == '/')) {
				size_t n = strlen(to) + strlen(p + fl) + 1;
				char *q = malloc(n);
				ASSERT(q != NULL);
				snprintf(q, n, "%s%s", to, p + fl);
				free(p);
				s->dirs[i] = q;
			}
		}
		for (size_t i = 0; i < s->nfiles; i++) {
			char *p = s->files[i]->path;
			if (strncmp(p, from, fl) == 0 && p[fl] == '/') {
				size_t n = strlen(to) + strlen(p + fl) + 1;
				char *q = malloc(n);
				ASSERT(q != NULL);
				snprintf(q, n, "%s%s", to, p + fl);
				free(p);
				s->files[i]->path = q;
			}
		}
	} else {
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_mkdir(io_t *io, const char *path)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	if (s->crashed)
		rc = -EIO;
	else if (find_dir(s, path) >= 0 || find_file(s, path, NULL))
		rc = -EEXIST;
	else if (!parent_exists(s, path))
		rc = -ENOENT;
	else {
		s->dirs = realloc(s->dirs, (s->ndirs + 1) * sizeof *s->dirs);
		ASSERT(s->dirs != NULL);
		s->dirs[s->ndirs++] = strdup(path);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int is_child(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && path[n] == '/' && strchr(path + n + 1, '/') == NULL;
}

static int sim_rmdir(io_t *io, const char *path)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	int rc = 0;
	int d = find_dir(s, path);
	if (s->crashed)
		rc = -EIO;
	else if (d < 0)
		rc = -ENOENT;
	else {
		for (size_t i = 0; i < s->nfiles; i++)
			if (is_child(path, s->files[i]->path))
				rc = -ENOTEMPTY;
		for (size_t i = 0; i < s->ndirs; i++)
			if (is_child(path, s->dirs[i]))
				rc = -ENOTEMPTY;
		if (rc == 0) {
			free(s->dirs[d]);
			s->dirs[d] = s->dirs[--s->ndirs];
		}
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sim_list(io_t *io, const char *dir, io_list_fn fn, void *arg)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	if (find_dir(s, dir) < 0) {
		pthread_mutex_unlock(&s->mu);
		return -ENOENT;
	}
	/* Collect names first: the callback may call back into the sim. */
	size_t n = 0;
	char **names = malloc((s->nfiles + s->ndirs + 1) * sizeof *names);
	ASSERT(names != NULL);
	for (size_t i = 0; i < s->nfiles; i++)
		if (is_child(dir, s->files[i]->path))
			names[n++] = strdup(strrchr(s->files[i]->path, '/') + 1);
	for (size_t i = 0; i < s->ndirs; i++)
		if (is_child(dir, s->dirs[i]))
			names[n++] = strdup(strrchr(s->dirs[i], '/') + 1);
	pthread_mutex_unlock(&s->mu);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			rc = fn(arg, names[i]);
		free(names[i]);
	}
	free(names);
	return rc < 0 ? rc : 0;
}

static int sim_fsync_dir(io_t *io, const char *dir)
{
	io_sim_t *s = SIM(io);
	pthread_mutex_lock(&s->mu);
	int rc = s->crashed ? -EIO : find_dir(s, dir) >= 0 ? 0 : -ENOENT;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

io_sim_t *io_sim_new(void)
{
	io_sim_t *s = calloc(1, sizeof *s);
	ASSERT(s != NULL);
	io_t io = { sim_open, sim_close, sim_pwrite, sim_pread, sim_fdatasync, sim_ftruncate, sim_fallocate,
		    sim_fsize, sim_unlink, sim_rename, sim_mkdir, sim_rmdir, sim_list, sim_fsync_dir };
	s->io = io;
	pthread_mutex_init(&s->mu, NULL);
	s->dirs = malloc(sizeof *s->dirs);
	ASSERT(s->dirs != NULL);
	s->dirs[s->ndirs++] = strdup("/");
	return s;
}

void io_sim_free(io_sim_t *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nfiles; i++)
		file_free(s->files[i]);
	for (size_t i = 0; i < s->ndirs; i++)
		free(s->dirs[i]);
	free(s->files);
	free(s->dirs);
	free(s->fds);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

io_t *io_sim_io(io_sim_t *s)
{
	return &s->io;
}

void io_sim_crash_at_sync(io_sim_t *s, int n)
{
	pthread_mutex_lock(&s->mu);
	s->crash_at = n;
	pthread_mutex_unlock(&s->mu);
}

int io_sim_crashed(const io_sim_t *s)
{
	return s->crashed;
}

void io_sim_crash_now(io_sim_t *s)
{
	pthread_mutex_lock(&s->mu);
	s->crashed = 1;
	pthread_mutex_unlock(&s->mu);
}

void io_sim_fail_sync_at(io_sim_t *s, int n)
{
	pthread_mutex_lock(&s->mu);
	s->fail_at = n;
	pthread_mutex_unlock(&s->mu);
}

void io_sim_set_space_limit(io_sim_t *s, int64_t limit)
{
	pthread_mutex_lock(&s->mu);
	s->space_limit = limit;
	pthread_mutex_unlock(&s->mu);
}

int io_sim_sync_count(const io_sim_t *s)
{
	return s->syncs;
}

static uint64_t rng_next(uint64_t *x)
{
	/* splitmix64 */
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void crash_file(sim_file_t *f, uint64_t *rng)
{
	/* Start from the durable image, replay each unsynced op as kept, dropped or torn. */
	f->cur_len = 0;
	cur_resize(f, f->dur_len);
	copy_bytes(f->cur, f->dur, (size_t)f->dur_len);
	for (size_t i = 0; i < f->nops; i++) {
		sim_op_t *op = &f->ops[i];
		unsigned choice = (unsigned)(rng_next(rng) % 3);
		if (choice == 1)
			continue; /* dropped */
		if (op->is_trunc) {
			cur_resize(f, op->len);
			continue;
		}
		int64_t end = op->off + op->len;
		if (end > f->cur_len)
			cur_resize(f, end);
		if (choice == 0) {
			copy_bytes(f->cur + op->off, op->data, (size_t)op->len);
		} else { /* torn: a prefix of whole 512-byte sectors lands, the next sector is garbage */
			int64_t keep = op->len ? (int64_t)(rng_next(rng) % (uint64_t)op->len) & ~511ll : 0;
			copy_bytes(f->cur + op->off, op->data, (size_t)keep);
			for (int64_t k = keep; k < op->len && k < keep + 512; k++)
				f->cur[op->off + k] = (uint8_t)rng_next(rng);
		}
	}
	make_durable(f);
}

void io_sim_recover(io_sim_t *s, uint64_t seed)
{
	pthread_mutex_lock(&s->mu);
	uint64_t rng = seed;
	for (size_t i = 0; i < s->nfiles; i++)
		crash_file(s->files[i], &rng);
	for (size_t i = 0; i < s->nfds; i++)
		s->fds[i] = NULL;
	s->crashed = 0;
	s->crash_at = 0;
	s->fail_at = 0;
	pthread_mutex_unlock(&s->mu);
}

const uint8_t *io_sim_file_data(io_sim_t *s, const char *path, int64_t *size)
{
	sim_file_t *f = find_file(s, path, NULL);
	if (f == NULL)
		return NULL;
	*size = f->cur_len;
	return f->cur;
}

err_t io_sim_flip_bit(io_sim_t *s, const char *path, int64_t off, int bit)
{
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = find_file(s, path, NULL);
	err_t rc = OK;
	if (f == NULL || off >= f->cur_len)
		rc = ERR_NOT_FOUND;
	else {
		f->cur[off] ^= (uint8_t)(1u << bit);
		if (off < f->dur_len)
			f->dur[off] ^= (uint8_t)(1u << bit);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

err_t io_sim_truncate_file(io_sim_t *s, const char *path, int64_t size)
{
	pthread_mutex_lock(&s->mu);
	sim_file_t *f = find_file(s, path, NULL);
	err_t rc = OK;
	if (f == NULL)
		rc = ERR_NOT_FOUND;
	else {
		cur_resize(f, size);
		make_durable(f);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}
