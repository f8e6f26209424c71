/*
 * powerloss.c -- an LD_PRELOAD shim that keeps a second copy of a directory tree holding only what has been
 * made durable, so a test can cut the power below the page cache (in the spirit of LazyFS).
 *
 * Purpose: kill -9 only loses a process; the page cache survives it, so every write() that returned is still
 * there after the restart. A power cut loses what was not synced. This shim watches every file and directory
 * under FACTLOG_POWERLOSS_ROOT and mirrors into FACTLOG_POWERLOSS_SHADOW exactly what a strict disk would
 * have kept at each moment:
 *   - a file's data and size become durable when fsync()/fdatasync() on it returns 0 (the byte ranges
 *     written since its last sync are copied into SHADOW/blobs/ID);
 *   - a name (create, rename, unlink, mkdir, rmdir) becomes durable when the directory holding it is
 *     fsynced: name operations are kept in one ordered list and an fsync of directory D makes durable every
 *     pending operation up to the last one that touches D (a journal that commits in order, as ext4's does,
 *     but never without a directory fsync, which is stricter than ext4); with FACTLOG_POWERLOSS_STRICT=1
 *     only the operations on D itself (POSIX's letter: a file whose directory's own entry was never made
 *     durable is lost with it);
 *   - SHADOW/names lists the durable names ("d PATH" or "f ID PATH", PATH relative to the root); it is
 *     replaced atomically after each change.
 * After the process is killed, tests/faults/test_power_loss.py rebuilds the tree from SHADOW/names and the
 * blobs: the disk as it would be after the power came back. Unsynced data and names are gone.
 *
 * Invariants:
 *   1. A blob only ever holds bytes that were in the real file when an fsync on it returned (or later ones:
 *      a disk may write back early, so bytes written during the copy may be kept; acknowledged data never
 *      depends on that).
 *   2. Only the process that loaded the shim first records anything (the pid is passed to children in the
 *      environment; a forked worker leaves the shadow alone).
 * Threads: one mutex guards the shim's tables; calls on descriptors outside the root only read one array.
 * Limits: descriptors below FD_MAX; files are written with write/writev/pwrite/pwritev/ftruncate; mmap
 * writes and stdio's internal calls are not seen (factlog uses neither for its data).
 */
/* Built without _FILE_OFFSET_BITS (tests/faults/meson.build), so open and open64 are two symbols to define. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define FD_MAX (1 << 20)
#define MAX_FILES 100000

typedef struct {
	int64_t lo, hi;   /* written byte range since the last sync (lo >= hi: none) */
	int64_t cut;      /* the smallest length ftruncate/O_TRUNC set since the last sync (INT64_MAX: none) */
	dev_t dev;
	ino_t ino;
} file_t;

typedef struct {
	char kind;        /* 'c' create file, 'r' rename, 'u' unlink, 'm' mkdir, 'd' rmdir */
	int id;           /* 'c', and 'r' of a file (0: a directory) */
	char *a, *b;      /* paths relative to the root; b for 'r' only */
} op_t;

typedef struct {
	char kind;        /* 'd' or 'f' */
	int id;
	char *path;
} name_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int active, strict;
static char root[PATH_MAX], shadow[PATH_MAX];
static size_t root_len;
static int *fd_id;        /* fd -> file id (> 0), -1 for a directory under the root, 0 untracked */
static char **fd_dir;     /* fd -> relative path of a directory under the root */
static file_t *files;     /* index = id */
static int nfiles = 1;
static op_t *ops;
static size_t nops, cap_ops;
static name_t *names;
static size_t nnames, cap_names;

#define REAL(ret, name, args) static ret(*real_##name) args
REAL(int, open, (const char *, int, ...));
REAL(int, openat, (int, const char *, int, ...));
REAL(int, close, (int));
REAL(ssize_t, write, (int, const void *, size_t));
REAL(ssize_t, pwrite, (int, const void *, size_t, off_t));
REAL(ssize_t, pwritev, (int, const struct iovec *, int, off_t));
REAL(ssize_t, writev, (int, const struct iovec *, int));
REAL(int, ftruncate, (int, off_t));
REAL(int, fsync, (int));
REAL(int, fdatasync, (int));
REAL(int, rename, (const char *, const char *));
REAL(int, renameat, (int, const char *, int, const char *));
REAL(int, unlink, (const char *));
REAL(int, unlinkat, (int, const char *, int));
REAL(int, mkdir, (const char *, mode_t));
REAL(int, rmdir, (const char *));

static void *next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p == NULL) {
		fprintf(stderr, "powerloss shim: no %s\n", name);
		abort();
	}
	return p;
}

#define BIND(name) memcpy(&real_##name, &(void *){ next(#name) }, sizeof real_##name)

static void die(const char *what, const char *path)
{
	fprintf(stderr, "powerloss shim: %s %s: %s\n", what, path ? path : "", strerror(errno));
	abort();
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		die("out of memory", NULL);
	return d;
}

/* --- paths --- */

/* Absolute, with "//" and "/./" collapsed, into out; 0 if not representable. */
static int abs_path(int dirfd, const char *path, char *out)
{
	char tmp[PATH_MAX * 2];
	if (path[0] == '/') {
		snprintf(tmp, sizeof tmp, "%s", path);
	} else {
		char base[PATH_MAX];
		if (dirfd == AT_FDCWD) {
			if (getcwd(base, sizeof base) == NULL)
				return 0;
		} else {
			char link[64];
			snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
			ssize_t n = readlink(link, base, sizeof base - 1);
			if (n < 0)
				return 0;
			base[n] = 0;
		}
		snprintf(tmp, sizeof tmp, "%s/%s", base, path);
	}
	size_t o = 0;
	for (size_t i = 0; tmp[i] && o < PATH_MAX - 1; i++) {
		if (tmp[i] == '/' && (tmp[i + 1] == '/' || (tmp[i + 1] == '.' && (tmp[i + 2] == '/' || !tmp[i + 2]))))
			continue;
		out[o++] = tmp[i];
	}
	while (o > 1 && out[o - 1] == '/')
		o--;
	out[o] = 0;
	return o > 0;
}

/* The path relative to the root ("" for the root itself) or NULL when outside it. */
static const char *rel_of(const char *abs)
{
	if (strncmp(abs, root, root_len) != 0)
		return NULL;
	if (abs[root_len] == 0)
		return abs + root_len;
	return abs[root_len] == '/' ? abs + root_len + 1 : NULL;
}

static char *parent_of(const char *rel)
{
	char *p = xstrdup(rel);
	char *slash = strrchr(p, '/');
	if (slash != NULL)
		*slash = 0;
	else
		p[0] = 0;
	return p;
}

/* --- the durable names --- */

static name_t *name_find(const char *path)
{
	for (size_t i = 0; i < nnames; i++)
		if (strcmp(names[i].path, path) == 0)
			return &names[i];
	return NULL;
}

static void name_remove_at(size_t i)
{
	free(names[i].path);
	names[i] = names[--nnames];
}

static void name_set(char kind, int id, const char *path)
{
	name_t *n = name_find(path);
	if (n == NULL) {
		if (nnames == cap_names) {
			cap_names = cap_names ? cap_names * 2 : 256;
			names = realloc(names, cap_names * sizeof *names);
			if (names == NULL)
				die("out of memory", NULL);
		}
		n = &names[nnames++];
		n->path = xstrdup(path);
	}
	n->kind = kind;
	n->id = id;
}

static int under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

static void names_write(void)
{
	char tmp[PATH_MAX + 16], dst[PATH_MAX + 16];
	snprintf(tmp, sizeof tmp, "%s/names.tmp", shadow);
	snprintf(dst, sizeof dst, "%s/names", shadow);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		die("create", tmp);
	for (size_t i = 0; i < nnames; i++) {
		if (names[i].kind == 'd')
			fprintf(f, "d %s\n", names[i].path);
		else
			fprintf(f, "f %d %s\n", names[i].id, names[i].path);
	}
	if (fclose(f) != 0 || real_rename(tmp, dst) != 0)
		die("write", dst);
}

static void op_apply(const op_t *op)
{
	switch (op->kind) {
	case 'c': name_set('f', op->id, op->a); break;
	case 'm': name_set('d', 0, op->a); break;
	case 'u':
	case 'd':
		for (size_t i = nnames; i-- > 0;)
			if (op->kind == 'u' ? strcmp(names[i].path, op->a) == 0 : under(names[i].path, op->a))
				name_remove_at(i);
		break;
	case 'r': {
		if (op->id > 0) { /* a file: its new name points at its data, whatever became of the old name */
			for (size_t i = nnames; i-- > 0;)
				if (strcmp(names[i].path, op->a) == 0)
					name_remove_at(i);
			name_set('f', op->id, op->b);
			break;
		}
		/* A directory: rename(2) replaces the target (an empty directory) and moves the subtree. */
		for (size_t i = nnames; i-- > 0;)
			if (under(names[i].path, op->b) && !under(names[i].path, op->a))
				name_remove_at(i);
		size_t la = strlen(op->a);
		for (size_t i = 0; i < nnames; i++) {
			if (!under(names[i].path, op->a))
				continue;
			char *p = malloc(strlen(op->b) + strlen(names[i].path + la) + 1);
			if (p == NULL)
				die("out of memory", NULL);
			strcpy(p, op->b);
			strcat(p, names[i].path + la);
			free(names[i].path);
			names[i].path = p;
		}
		break;
	}
	}
}

static int op_touches(const op_t *op, const char *dir)
{
	char *pa = parent_of(op->a);
	int t = strcmp(pa, dir) == 0;
	free(pa);
	if (!t && op->b != NULL) {
		char *pb = parent_of(op->b);
		t = strcmp(pb, dir) == 0;
		free(pb);
	}
	return t;
}

static void op_push(char kind, int id, const char *a, const char *b)
{
	if (nops == cap_ops) {
		cap_ops = cap_ops ? cap_ops * 2 : 256;
		ops = realloc(ops, cap_ops * sizeof *ops);
		if (ops == NULL)
			die("out of memory", NULL);
	}
	ops[nops++] = (op_t){ kind, id, xstrdup(a), b ? xstrdup(b) : NULL };
}

/* An fsync of directory `dir` returned: every pending operation up to the last one touching it is durable. */
static void dir_synced(const char *dir)
{
	size_t last = 0;
	for (size_t i = 0; i < nops; i++)
		if (op_touches(&ops[i], dir))
			last = i + 1;
	if (last == 0)
		return;
	if (strict) {
		size_t keep = 0;
		for (size_t i = 0; i < nops; i++) {
			if (!op_touches(&ops[i], dir)) {
				ops[keep++] = ops[i];
				continue;
			}
			op_apply(&ops[i]);
			free(ops[i].a);
			free(ops[i].b);
		}
		nops = keep;
		names_write();
		return;
	}
	for (size_t i = 0; i < last; i++) {
		op_apply(&ops[i]);
		free(ops[i].a);
		free(ops[i].b);
	}
	memmove(ops, ops + last, (nops - last) * sizeof *ops);
	nops -= last;
	names_write();
}

/* --- file data --- */

static int file_new(dev_t dev, ino_t ino)
{
	if (nfiles >= MAX_FILES)
		die("too many files", NULL);
	files[nfiles] = (file_t){ .lo = 0, .hi = 0, .cut = INT64_MAX, .dev = dev, .ino = ino };
	return nfiles++;
}

static int file_lookup(dev_t dev, ino_t ino)
{
	for (int i = nfiles - 1; i > 0; i--)
		if (files[i].dev == dev && files[i].ino == ino)
			return i;
	return 0;
}

static void file_dirty(int id, int64_t lo, int64_t hi)
{
	file_t *f = &files[id];
	if (f->lo >= f->hi) {
		f->lo = lo;
		f->hi = hi;
	} else {
		if (lo < f->lo)
			f->lo = lo;
		if (hi > f->hi)
			f->hi = hi;
	}
}

static int blob_open(int id)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/blobs/%d", shadow, id);
	int fd = real_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		die("open", path);
	return fd;
}

/* fsync/fdatasync on a file under the root returned 0: copy what changed since the last one. */
static void file_synced(int id, int fd)
{
	file_t *f = &files[id];
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("fstat", NULL);
	int b = blob_open(id);
	/* Bytes cut off and grown back since the last sync read as zeros, not as the blob's old bytes. */
	if (f->cut != INT64_MAX && real_ftruncate(b, f->cut) != 0)
		die("truncate blob", NULL);
	if (f->lo < f->hi && f->lo < st.st_size) {
		int64_t end = f->hi < st.st_size ? f->hi : st.st_size;
		char *buf = malloc(1 << 20);
		if (buf == NULL)
			die("out of memory", NULL);
		for (int64_t off = f->lo; off < end;) {
			size_t want = (size_t)(end - off < (1 << 20) ? end - off : (1 << 20));
			ssize_t n = pread(fd, buf, want, off);
			if (n <= 0)
				break; /* truncated meanwhile: the size below decides */
			if (real_pwrite(b, buf, (size_t)n, off) != n)
				die("write blob", NULL);
			off += n;
		}
		free(buf);
	}
	if (real_ftruncate(b, st.st_size) != 0)
		die("truncate blob", NULL);
	real_close(b);
	f->lo = f->hi = 0;
	f->cut = INT64_MAX;
}

/* --- start: the tree as it is now is durable --- */

static void snapshot(const char *rel)
{
	char abs[PATH_MAX * 2];
	snprintf(abs, sizeof abs, "%s%s%s", root, rel[0] ? "/" : "", rel);
	DIR *d = opendir(abs);
	if (d == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char r[PATH_MAX * 2], a[PATH_MAX * 3];
		snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
		snprintf(a, sizeof a, "%s/%s", root, r);
		struct stat st;
		if (lstat(a, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			name_set('d', 0, r);
			snapshot(r);
		} else if (S_ISREG(st.st_mode)) {
			int id = file_new(st.st_dev, st.st_ino);
			int fd = real_open(a, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				die("open", a);
			file_dirty(id, 0, st.st_size);
			file_synced(id, fd);
			real_close(fd);
			name_set('f', id, r);
		}
	}
	closedir(d);
}

__attribute__((constructor)) static void powerloss_init(void)
{
	BIND(open);
	BIND(openat);
	BIND(close);
	BIND(write);
	BIND(pwrite);
	BIND(pwritev);
	BIND(writev);
	BIND(ftruncate);
	BIND(fsync);
	BIND(fdatasync);
	BIND(rename);
	BIND(renameat);
	BIND(unlink);
	BIND(unlinkat);
	BIND(mkdir);
	BIND(rmdir);
	const char *r = getenv("FACTLOG_POWERLOSS_ROOT");
	const char *s = getenv("FACTLOG_POWERLOSS_SHADOW");
	const char *owner = getenv("FACTLOG_POWERLOSS_PID");
	const char *st = getenv("FACTLOG_POWERLOSS_STRICT");
	strict = st != NULL && strcmp(st, "1") == 0;
	if (r == NULL || s == NULL)
		return;
	if (owner != NULL && atol(owner) != (long)getpid())
		return; /* a child of the process under test */
	char pid[32];
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	setenv("FACTLOG_POWERLOSS_PID", pid, 1);
	if (realpath(r, root) == NULL)
		die("root", r);
	snprintf(shadow, sizeof shadow, "%s", s);
	root_len = strlen(root);
	char blobs[PATH_MAX + 16];
	snprintf(blobs, sizeof blobs, "%s/blobs", shadow);
	if (real_mkdir(blobs, 0755) != 0 && errno != EEXIST)
		die("mkdir", blobs);
	fd_id = calloc(FD_MAX, sizeof *fd_id);
	fd_dir = calloc(FD_MAX, sizeof *fd_dir);
	files = calloc(MAX_FILES, sizeof *files);
	if (fd_id == NULL || fd_dir == NULL || files == NULL)
		die("out of memory", NULL);
	snapshot("");
	names_write();
	active = 1;
}

/* --- the calls --- */

static int tracked(int fd)
{
	return active && fd >= 0 && fd < FD_MAX && fd_id[fd] != 0;
}

static void forget_fd(int fd)
{
	if (fd < 0 || fd >= FD_MAX)
		return;
	fd_id[fd] = 0;
	free(fd_dir[fd]);
	fd_dir[fd] = NULL;
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
	char abs[PATH_MAX];
	const char *rel = NULL;
	int existed = 1;
	if (active && abs_path(dirfd, path, abs) && (rel = rel_of(abs)) != NULL && (flags & O_CREAT)) {
		struct stat st;
		existed = lstat(abs, &st) == 0;
	}
	int fd = real_openat(dirfd, path, flags, mode);
	if (fd < 0 || rel == NULL || fd >= FD_MAX)
		return fd;
	int saved = errno;
	struct stat st;
	pthread_mutex_lock(&mu);
	forget_fd(fd);
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		fd_id[fd] = -1;
		fd_dir[fd] = xstrdup(rel);
	} else if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		int id = existed ? file_lookup(st.st_dev, st.st_ino) : 0;
		if (id == 0) {
			/* A file made by a call the shim does not see has no durable name: say so (tests check). */
			if (existed)
				fprintf(stderr, "powerloss shim: %s existed but was never seen\n", rel);
			id = file_new(st.st_dev, st.st_ino);
			if (!existed)
				op_push('c', id, rel, NULL);
		}
		if (flags & O_TRUNC)
			files[id].cut = 0;
		fd_id[fd] = id;
	}
	pthread_mutex_unlock(&mu);
	errno = saved;
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_open(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return do_open(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
	return do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd)
{
	if (tracked(fd)) {
		pthread_mutex_lock(&mu);
		forget_fd(fd);
		pthread_mutex_unlock(&mu);
	}
	return real_close(fd);
}

static void dirty_range(int fd, int64_t off, ssize_t n)
{
	if (n <= 0 || !tracked(fd))
		return;
	pthread_mutex_lock(&mu);
	if (fd_id[fd] > 0)
		file_dirty(fd_id[fd], off, off + n);
	pthread_mutex_unlock(&mu);
}

/* Where a write() at the file position lands: the position, or 0 (all of it) when appending. */
static int64_t position(int fd)
{
	if (!tracked(fd))
		return 0;
	int fl = fcntl(fd, F_GETFL);
	int64_t off = fl >= 0 && !(fl & O_APPEND) ? lseek(fd, 0, SEEK_CUR) : -1;
	return off;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	int64_t off = position(fd);
	ssize_t n = real_write(fd, buf, len);
	if (n > 0)
		dirty_range(fd, off < 0 ? 0 : off, off < 0 ? INT64_MAX / 2 : n);
	return n;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	int64_t off = position(fd);
	ssize_t n = real_writev(fd, iov, cnt);
	if (n > 0)
		dirty_range(fd, off < 0 ? 0 : off, off < 0 ? INT64_MAX / 2 : n);
	return n;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = real_pwrite(fd, buf, len, off);
	dirty_range(fd, off, n);
	return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	ssize_t n = real_pwritev(fd, iov, cnt, off);
	dirty_range(fd, off, n);
	return n;
}

/* fallocate needs nothing: it only adds zeros past the end, and a sync sets the blob's size. */
int ftruncate(int fd, off_t len)
{
	int rc = real_ftruncate(fd, len);
	if (rc == 0 && tracked(fd)) {
		pthread_mutex_lock(&mu);
		if (fd_id[fd] > 0 && len < files[fd_id[fd]].cut)
			files[fd_id[fd]].cut = len;
		pthread_mutex_unlock(&mu);
	}
	return rc;
}

static void synced(int fd)
{
	if (!tracked(fd))
		return;
	pthread_mutex_lock(&mu);
	if (fd_id[fd] > 0)
		file_synced(fd_id[fd], fd);
	else if (fd_id[fd] < 0)
		dir_synced(fd_dir[fd]);
	pthread_mutex_unlock(&mu);
}

int fsync(int fd)
{
	int rc = real_fsync(fd);
	if (rc == 0)
		synced(fd);
	return rc;
}

int fdatasync(int fd)
{
	int rc = real_fdatasync(fd);
	if (rc == 0)
		synced(fd);
	return rc;
}

/* Records a name operation on success; a and b are (dirfd, path) pairs, b only for a rename. */
static void name_op(char kind, int dfa, const char *a, int dfb, const char *b)
{
	if (!active)
		return;
	char aa[PATH_MAX], ab[PATH_MAX];
	const char *ra = abs_path(dfa, a, aa) ? rel_of(aa) : NULL;
	const char *rb = b != NULL && abs_path(dfb, b, ab) ? rel_of(ab) : NULL;
	struct stat st;
	int is_file = rb != NULL && stat(ab, &st) == 0 && S_ISREG(st.st_mode);
	pthread_mutex_lock(&mu);
	if (kind == 'r' && ra != NULL && rb != NULL)
		op_push('r', is_file ? file_lookup(st.st_dev, st.st_ino) : 0, ra, rb);
	else if (kind == 'r' && rb != NULL) /* moved in from outside: its content was never synced here */
		fprintf(stderr, "powerloss shim: %s moved in from outside the root\n", rb);
	else if (kind == 'r' && ra != NULL)
		op_push('u', 0, ra, NULL);
	else if (kind != 'r' && ra != NULL)
		op_push(kind, 0, ra, NULL);
	pthread_mutex_unlock(&mu);
}

int rename(const char *from, const char *to)
{
	int rc = real_rename(from, to);
	if (rc == 0)
		name_op('r', AT_FDCWD, from, AT_FDCWD, to);
	return rc;
}

int renameat(int dfa, const char *from, int dfb, const char *to)
{
	int rc = real_renameat(dfa, from, dfb, to);
	if (rc == 0)
		name_op('r', dfa, from, dfb, to);
	return rc;
}

int unlink(const char *path)
{
	int rc = real_unlink(path);
	if (rc == 0)
		name_op('u', AT_FDCWD, path, AT_FDCWD, NULL);
	return rc;
}

int unlinkat(int dirfd, const char *path, int flags)
{
	int rc = real_unlinkat(dirfd, path, flags);
	if (rc == 0)
		name_op((flags & AT_REMOVEDIR) ? 'd' : 'u', dirfd, path, AT_FDCWD, NULL);
	return rc;
}

int mkdir(const char *path, mode_t mode)
{
	int rc = real_mkdir(path, mode);
	if (rc == 0)
		name_op('m', AT_FDCWD, path, AT_FDCWD, NULL);
	return rc;
}

int rmdir(const char *path)
{
	int rc = real_rmdir(path);
	if (rc == 0)
		name_op('d', AT_FDCWD, path, AT_FDCWD, NULL);
	return rc;
}

/* Without _FILE_OFFSET_BITS the *64 names are separate symbols with the same arguments on 64-bit systems. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("pwritev")));
int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));
