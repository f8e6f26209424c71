/* archive.c -- the archive's two backends: a directory and an S3-compatible store. See archive.h. */
#include "storage/archive.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fl_assert.h"
#include "core/log.h"

/* One file of the S3 download cache. */
typedef struct {
	char *rel;      /* PREFIX/NAME, under the cache directory */
	int64_t bytes;
	uint64_t used;  /* the cache's clock when last handed to a reader: the least recent goes first */
	int pins;       /* readers using it (archive_local_dir .. archive_local_done): never evicted */
	bool doomed;    /* its prefix was deleted: removed at the last unpin */
} cfile_t;

struct archive {
	bool s3;
	char *root;     /* directory backend: the root; s3: the cache directory */
	char *bucket, *prefix, *endpoint, *region, *userpwd, *sigv4;
	char describe[600];
	/* S3: the download cache, under cache_mu. Invariant: cache_bytes is the sum of files[].bytes, and
	 * after every insertion cache_bytes <= cache_bytes_max unless the pinned files alone exceed it. */
	pthread_mutex_t cache_mu;
	cfile_t *files;
	size_t nfiles, capfiles;
	int64_t cache_bytes, cache_bytes_max;
	uint64_t clock;
	bool over_logged; /* "pinned files exceed the limit" was logged (until it fits again) */
	atomic_bool cancelled; /* archive_cancel: S3 requests in progress abort, later ones fail at once */
};

static char *dupstr(const char *s)
{
	char *d = strdup(s ? s : "");
	ASSERT(d != NULL);
	return d;
}

/* mkdir -p of path's parent directories (or of path itself when `self`). */
static err_t mkdirs(const char *path, bool self)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
		return ERR_INVALID;
	if (!self) {
		char *slash = strrchr(tmp, '/');
		if (slash == NULL)
			return OK;
		*slash = 0;
	}
	for (char *p = tmp + 1;; p++) {
		bool end = *p == 0;
		if (*p == '/' || end) {
			*p = 0;
			if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
				return ERR_SYS(errno);
			if (end)
				break;
			*p = '/';
		}
	}
	return OK;
}

static err_t fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL)
		*slash = 0;
	int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ERR_SYS(errno);
	err_t rc = fsync(fd) != 0 ? ERR_SYS(errno) : OK;
	close(fd);
	return rc;
}

static err_t write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ERR_SYS(errno);
		p += n;
		len -= (size_t)n;
	}
	return OK;
}

/* Writes `dst` atomically and durably from `src_fd` (read from its start) or from data/len. */
static err_t dir_write(const char *dst, int src_fd, const void *data, size_t len)
{
	err_t rc = mkdirs(dst, false);
	if (rc != OK)
		return rc;
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", dst) >= (int)sizeof tmp)
		return ERR_INVALID;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return ERR_SYS(errno);
	if (src_fd >= 0) {
		char *b = malloc(1 << 20);
		ASSERT(b != NULL);
		for (off_t off = 0; rc == OK;) {
			ssize_t n = pread(src_fd, b, 1 << 20, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				rc = ERR_SYS(errno);
			if (n <= 0)
				break;
			rc = write_all(fd, b, (size_t)n);
			off += n;
		}
		free(b);
	} else {
		rc = write_all(fd, data, len);
	}
	if (rc == OK && fsync(fd) != 0)
		rc = ERR_SYS(errno);
	close(fd);
	if (rc == OK && rename(tmp, dst) != 0)
		rc = ERR_SYS(errno);
	if (rc == OK)
		rc = fsync_dir_of(dst);
	if (rc != OK)
		unlink(tmp);
	return rc;
}

/* --- S3 over libcurl --- */

typedef struct {
	buf_t *out; /* the body, or NULL */
	FILE *file; /* or a file to write it to */
} sink_t;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	sink_t *s = arg;
	if (s->file != NULL)
		return fwrite(data, size, n, s->file);
	if (s->out != NULL)
		buf_append(s->out, data, size * n);
	return size * n;
}

typedef struct {
	const char *data;
	size_t len, pos;
} source_t;

/* libcurl calls it about once a second even while nothing moves: a cancelled transfer stops within that. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(&((archive_t *)arg)->cancelled) ? 1 : 0;
}

static size_t on_read(char *dst, size_t size, size_t n, void *arg)
{
	source_t *s = arg;
	size_t k = size * n;
	if (k > s->len - s->pos)
		k = s->len - s->pos;
	memcpy(dst, s->data + s->pos, k);
	s->pos += k;
	return k;
}

/* One S3 request. method: GET, PUT or DELETE. For PUT, the body is the file `in` or data/len. key NULL: a
 * request on the bucket with `query` (already canonical: parameters sorted, values URI-encoded). */
static err_t s3_request(archive_t *a, const char *method, const char *key, const char *query, FILE *in,
			int64_t in_len, const void *data, size_t len, sink_t *sink, long *status)
{
	if (atomic_load(&a->cancelled))
		return ERR_SYS(ECANCELED);
	CURL *c = curl_easy_init();
	if (c == NULL)
		return ERR_SYS(ENOMEM);
	char url[PATH_MAX + 2048];
	if (key == NULL)
		snprintf(url, sizeof url, "%s/%s?%s", a->endpoint, a->bucket, query ? query : "");
	else
		snprintf(url, sizeof url, "%s/%s/%s%s%s", a->endpoint, a->bucket, a->prefix, a->prefix[0] ? "/" : "",
			 key);
	struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, a->sigv4);
	curl_easy_setopt(c, CURLOPT_USERPWD, a->userpwd);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 600000L);
	/* a store that stops sending (under 1 byte/s for 60 s) fails the request long before that */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, a);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	sink_t none = { 0 };
	curl_easy_setopt(c, CURLOPT_WRITEDATA, sink ? sink : &none);
	source_t src = { data, len, 0 };
	if (strcmp(method, "PUT") == 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		if (in != NULL) {
			curl_easy_setopt(c, CURLOPT_READDATA, in);
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)in_len);
		} else {
			curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(c, CURLOPT_READDATA, &src);
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
		}
	} else if (strcmp(method, "DELETE") == 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
	}
	CURLcode cc = curl_easy_perform(c);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		log_info("archive: %s %s: cancelled (the storage is closing)", method, url);
		return ERR_SYS(ECANCELED);
	}
	if (cc != CURLE_OK) {
		log_warn("archive: %s %s: %s", method, url, curl_easy_strerror(cc));
		return ERR_SYS(EIO);
	}
	if (*status == 404)
		return ERR_NOT_FOUND;
	if (*status < 200 || *status > 299) {
		log_warn("archive: %s %s answered HTTP %ld", method, url, *status);
		return ERR_SYS(EIO);
	}
	return OK;
}

/* --- the S3 download cache: bounded, least recently used first --- */

static cfile_t *cache_find(archive_t *a, const char *rel)
{
	for (size_t i = 0; i < a->nfiles; i++)
		if (strcmp(a->files[i].rel, rel) == 0)
			return &a->files[i];
	return NULL;
}

/* Removes files[i] from the index and its file from the disk (with its directory, once empty). */
static void cache_remove(archive_t *a, size_t i)
{
	char path[PATH_MAX];
	cfile_t *f = &a->files[i];
	ASSERT(f->pins == 0);
	if (snprintf(path, sizeof path, "%s/%s", a->root, f->rel) < (int)sizeof path) {
		if (unlink(path) != 0 && errno != ENOENT)
			log_warn("archive cache: cannot remove %s: %s", path, strerror(errno));
		for (int up = 0; up < 2; up++) { /* PREFIX/PARTITION, then PREFIX: rmdir fails unless empty */
			char *slash = strrchr(path, '/');
			if (slash == NULL || slash <= path + strlen(a->root))
				break;
			*slash = 0;
			if (rmdir(path) != 0)
				break;
		}
	}
	a->cache_bytes -= f->bytes;
	ASSERT(a->cache_bytes >= 0);
	free(f->rel);
	a->files[i] = a->files[--a->nfiles];
}

/* Evicts unpinned files, least recently used first, until the cache fits its limit. */
static void cache_evict(archive_t *a)
{
	while (a->cache_bytes > a->cache_bytes_max) {
		size_t victim = a->nfiles;
		for (size_t i = 0; i < a->nfiles; i++)
			if (a->files[i].pins == 0 && (victim == a->nfiles || a->files[i].used < a->files[victim].used))
				victim = i;
		if (victim == a->nfiles) {
			if (!a->over_logged)
				log_warn("archive cache: %" PRId64 " bytes in files being read exceed the limit of %" PRId64
					 " bytes (more segments are read at once than fit)",
					 a->cache_bytes, a->cache_bytes_max);
			a->over_logged = true;
			return;
		}
		cache_remove(a, victim);
	}
	a->over_logged = false;
}

static cfile_t *cache_add(archive_t *a, const char *rel, int64_t bytes)
{
	if (a->nfiles == a->capfiles) {
		a->capfiles = a->capfiles ? a->capfiles * 2 : 64;
		a->files = realloc(a->files, a->capfiles * sizeof *a->files);
		ASSERT(a->files != NULL);
	}
	cfile_t *f = &a->files[a->nfiles++];
	*f = (cfile_t){ .rel = dupstr(rel), .bytes = bytes, .used = ++a->clock };
	a->cache_bytes += bytes;
	return f;
}

static void cache_unpin(archive_t *a, const char *rel)
{
	cfile_t *f = cache_find(a, rel);
	if (f == NULL)
		return;
	ASSERT(f->pins > 0);
	if (--f->pins == 0 && f->doomed)
		cache_remove(a, (size_t)(f - a->files));
}

/* nftw's callback for the startup scan (nftw takes no argument). */
static _Thread_local archive_t *scanning;

static int scan_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	archive_t *a = scanning;
	size_t rl = strlen(a->root);
	if (type != FTW_F || strncmp(path, a->root, rl) != 0 || path[rl] != '/')
		return 0;
	size_t n = strlen(path);
	if (n > 4 && strcmp(path + n - 4, ".tmp") == 0) { /* a download cut short */
		unlink(path);
		return 0;
	}
	cfile_t *f = cache_add(a, path + rl + 1, (int64_t)st->st_size);
	f->used = (uint64_t)st->st_mtime; /* ordered by age until the clock below takes over */
	return 0;
}

static int cmp_used(const void *x, const void *y)
{
	const cfile_t *f = x, *g = y;
	return f->used < g->used ? -1 : f->used > g->used;
}

/* Indexes what an earlier run left in the cache directory and trims it to the limit. */
static void cache_load(archive_t *a)
{
	scanning = a;
	if (nftw(a->root, scan_entry, 16, FTW_PHYS) != 0)
		log_warn("archive cache: cannot scan %s: %s", a->root, strerror(errno));
	scanning = NULL;
	if (a->nfiles > 1)
		qsort(a->files, a->nfiles, sizeof *a->files, cmp_used);
	for (size_t i = 0; i < a->nfiles; i++)
		a->files[i].used = ++a->clock;
	cache_evict(a);
	if (a->nfiles > 0)
		log_info("archive cache %s: %zu file(s), %" PRId64 " bytes (limit %" PRId64 ")", a->root, a->nfiles,
			 a->cache_bytes, a->cache_bytes_max);
}

/* Forgets (and removes) the cached files under prefix; a file being read goes at its last unpin. */
static err_t cache_drop_prefix(archive_t *a, const char *prefix, size_t *dropped)
{
	size_t pl = strlen(prefix);
	pthread_mutex_lock(&a->cache_mu);
	for (size_t i = a->nfiles; i > 0; i--) {
		cfile_t *f = &a->files[i - 1];
		if (strncmp(f->rel, prefix, pl) != 0 || f->rel[pl] != '/')
			continue;
		if (f->pins > 0) {
			f->doomed = true;
		} else {
			cache_remove(a, i - 1);
			(*dropped)++;
		}
	}
	pthread_mutex_unlock(&a->cache_mu);
	return OK;
}

int64_t archive_cache_bytes(archive_t *a)
{
	if (!a->s3)
		return 0;
	pthread_mutex_lock(&a->cache_mu);
	int64_t b = a->cache_bytes;
	pthread_mutex_unlock(&a->cache_mu);
	return b;
}

/* --- the interface --- */

err_t archive_open(const archive_opts_t *o, archive_t **out, char *err, size_t errcap)
{
	*out = NULL;
	if (o->location == NULL || o->location[0] == 0) {
		snprintf(err, errcap, "no archive location");
		return ERR_INVALID;
	}
	archive_t *a = calloc(1, sizeof *a);
	ASSERT(a != NULL);
	pthread_mutex_init(&a->cache_mu, NULL);
	if (strncmp(o->location, "s3://", 5) == 0) {
		const char *b = o->location + 5, *slash = strchr(b, '/');
		size_t bl = slash ? (size_t)(slash - b) : strlen(b);
		if (bl == 0 || bl > 63) {
			snprintf(err, errcap, "archive %s: expected s3://BUCKET[/PREFIX]", o->location);
			archive_close(a);
			return ERR_INVALID;
		}
		const char *ak = o->access_key ? o->access_key : getenv("AWS_ACCESS_KEY_ID");
		const char *sk = o->secret_key ? o->secret_key : getenv("AWS_SECRET_ACCESS_KEY");
		if (ak == NULL || sk == NULL || !ak[0] || !sk[0]) {
			snprintf(err, errcap, "archive %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", o->location);
			archive_close(a);
			return ERR_INVALID;
		}
		a->s3 = true;
		a->bucket = strndup(b, bl);
		a->prefix = dupstr(slash ? slash + 1 : "");
		size_t pl = strlen(a->prefix);
		while (pl > 0 && a->prefix[pl - 1] == '/')
			a->prefix[--pl] = 0;
		a->region = dupstr(o->s3_region && o->s3_region[0] ? o->s3_region : "us-east-1");
		char def[200];
		snprintf(def, sizeof def, "https://s3.%s.amazonaws.com", a->region);
		a->endpoint = dupstr(o->s3_endpoint && o->s3_endpoint[0] ? o->s3_endpoint : def);
		size_t el = strlen(a->endpoint);
		while (el > 0 && a->endpoint[el - 1] == '/')
			a->endpoint[--el] = 0;
		size_t ul = strlen(ak) + strlen(sk) + 2;
		a->userpwd = malloc(ul);
		ASSERT(a->userpwd != NULL);
		snprintf(a->userpwd, ul, "%s:%s", ak, sk);
		size_t sl = strlen(a->region) + 16;
		a->sigv4 = malloc(sl);
		ASSERT(a->sigv4 != NULL);
		snprintf(a->sigv4, sl, "aws:amz:%s:s3", a->region);
		a->root = dupstr(o->cache_dir);
		snprintf(a->describe, sizeof a->describe, "s3://%s%s%s at %s", a->bucket, pl ? "/" : "", a->prefix,
			 a->endpoint);
		if (o->cache_dir == NULL || mkdirs(o->cache_dir, true) != OK) {
			snprintf(err, errcap, "archive cache directory %s cannot be created", o->cache_dir ? o->cache_dir : "(none)");
			archive_close(a);
			return ERR_INVALID;
		}
		a->cache_bytes_max = o->cache_bytes_max > 0 ? o->cache_bytes_max : ARCHIVE_CACHE_BYTES_DEFAULT;
		cache_load(a);
	} else {
		a->root = dupstr(o->location);
		err_t rc = mkdirs(a->root, true);
		if (rc != OK) {
			snprintf(err, errcap, "archive directory %s: %s", a->root, err_str(rc));
			archive_close(a);
			return rc;
		}
		snprintf(a->describe, sizeof a->describe, "directory %s", a->root);
	}
	*out = a;
	return OK;
}

void archive_cancel(archive_t *a)
{
	if (a != NULL)
		atomic_store(&a->cancelled, true);
}

bool archive_cancelled(const archive_t *a)
{
	return a != NULL && atomic_load(&a->cancelled);
}

void archive_close(archive_t *a)
{
	if (a == NULL)
		return;
	free(a->root);
	free(a->bucket);
	free(a->prefix);
	free(a->endpoint);
	free(a->region);
	free(a->userpwd);
	free(a->sigv4);
	for (size_t i = 0; i < a->nfiles; i++)
		free(a->files[i].rel);
	free(a->files);
	pthread_mutex_destroy(&a->cache_mu);
	free(a);
}

const char *archive_describe(const archive_t *a)
{
	return a->describe;
}

static err_t dir_path(const archive_t *a, const char *key, char *path, size_t cap)
{
	if (strstr(key, "..") != NULL || key[0] == '/')
		return ERR_INVALID;
	return snprintf(path, cap, "%s/%s", a->root, key) >= (int)cap ? ERR_INVALID : OK;
}

err_t archive_put_file(archive_t *a, const char *key, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ERR_SYS(errno);
	err_t rc;
	if (!a->s3) {
		char dst[PATH_MAX];
		rc = dir_path(a, key, dst, sizeof dst);
		if (rc == OK)
			rc = dir_write(dst, fd, NULL, 0);
		close(fd);
		return rc;
	}
	struct stat stt;
	FILE *f = fstat(fd, &stt) == 0 ? fdopen(fd, "rb") : NULL;
	if (f == NULL) {
		rc = ERR_SYS(errno);
		close(fd);
		return rc;
	}
	long status;
	rc = s3_request(a, "PUT", key, NULL, f, (int64_t)stt.st_size, NULL, 0, NULL, &status);
	fclose(f);
	return rc;
}

err_t archive_put_bytes(archive_t *a, const char *key, const void *data, size_t len)
{
	if (!a->s3) {
		char dst[PATH_MAX];
		err_t rc = dir_path(a, key, dst, sizeof dst);
		return rc == OK ? dir_write(dst, -1, data, len) : rc;
	}
	long status;
	return s3_request(a, "PUT", key, NULL, NULL, 0, data, len, NULL, &status);
}

err_t archive_get_bytes(archive_t *a, const char *key, buf_t *out)
{
	out->len = 0;
	if (!a->s3) {
		char src[PATH_MAX];
		err_t rc = dir_path(a, key, src, sizeof src);
		if (rc != OK)
			return rc;
		int fd = open(src, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return errno == ENOENT ? ERR_NOT_FOUND : ERR_SYS(errno);
		char b[65536];
		for (;;) {
			ssize_t n = read(fd, b, sizeof b);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				rc = ERR_SYS(errno);
			if (n <= 0)
				break;
			buf_append(out, b, (size_t)n);
		}
		close(fd);
		return rc;
	}
	sink_t s = { out, NULL };
	long status;
	return s3_request(a, "GET", key, NULL, NULL, 0, NULL, 0, &s, &status);
}

err_t archive_delete(archive_t *a, const char *key)
{
	if (!a->s3) {
		char p[PATH_MAX];
		err_t rc = dir_path(a, key, p, sizeof p);
		if (rc == OK && unlink(p) != 0 && errno != ENOENT)
			rc = ERR_SYS(errno);
		return rc;
	}
	long status;
	err_t rc = s3_request(a, "DELETE", key, NULL, NULL, 0, NULL, 0, NULL, &status);
	return rc == ERR_NOT_FOUND ? OK : rc;
}

/* Downloads KEY into tmp (in the cache directory, next to where it goes); *bytes: its size. */
static err_t cache_download(archive_t *a, const char *key, const char *tmp, int64_t *bytes)
{
	err_t rc = OK;
	FILE *f = NULL;
	/* Eviction removes a directory once it is empty (cache_remove), which can fall between another
	 * thread's mkdirs and fopen here: then make it again. Once the file exists the directory stays. */
	for (int attempt = 0; attempt < 3 && f == NULL; attempt++) {
		rc = mkdirs(tmp, false);
		f = rc == OK ? fopen(tmp, "wb") : NULL;
		if (rc == OK && f == NULL)
			rc = ERR_SYS(errno);
		if (rc != ERR_SYS(ENOENT))
			break;
	}
	if (rc != OK)
		return rc;
	sink_t s = { NULL, f };
	long status;
	rc = s3_request(a, "GET", key, NULL, NULL, 0, NULL, 0, &s, &status);
	*bytes = (int64_t)ftello(f);
	if (fclose(f) != 0 && rc == OK)
		rc = ERR_SYS(errno);
	if (rc != OK)
		unlink(tmp);
	return rc;
}

/* Pins the cached file rel (downloading it first if the cache lacks it). A download makes room (evicting)
 * before its file takes its name, so the cached files never exceed the limit, downloads in progress aside. */
static err_t cache_pin(archive_t *a, const char *rel, const char *dst)
{
	pthread_mutex_lock(&a->cache_mu);
	cfile_t *f = cache_find(a, rel);
	if (f != NULL && !f->doomed) {
		f->pins++;
		f->used = ++a->clock;
		pthread_mutex_unlock(&a->cache_mu);
		return OK;
	}
	pthread_mutex_unlock(&a->cache_mu);
	char tmp[PATH_MAX + 32];
	snprintf(tmp, sizeof tmp, "%s.%d.tmp", dst, (int)gettid());
	int64_t bytes = 0;
	err_t rc = cache_download(a, rel, tmp, &bytes); /* without the lock: it may take a while */
	if (rc != OK)
		return rc;
	pthread_mutex_lock(&a->cache_mu);
	f = cache_find(a, rel);
	if (f != NULL) { /* another reader downloaded it meanwhile */
		unlink(tmp);
	} else {
		f = cache_add(a, rel, bytes);
		f->pins++;
		cache_evict(a); /* never this one: it is pinned */
		f = cache_find(a, rel);
		ASSERT(f != NULL);
		f->pins--;
		if (rename(tmp, dst) != 0) {
			rc = ERR_SYS(errno);
			unlink(tmp);
			cache_remove(a, (size_t)(f - a->files));
			pthread_mutex_unlock(&a->cache_mu);
			return rc;
		}
	}
	f->doomed = false;
	f->pins++;
	f->used = ++a->clock;
	pthread_mutex_unlock(&a->cache_mu);
	return OK;
}

err_t archive_local_dir(archive_t *a, const char *prefix, const char *const *names, int nnames, char *dir,
			size_t cap)
{
	err_t rc = dir_path(a, prefix, dir, cap);
	if (rc != OK || !a->s3)
		return rc;
	int pinned = 0;
	for (; pinned < nnames && rc == OK; pinned++) {
		char dst[PATH_MAX], key[PATH_MAX];
		if (snprintf(dst, sizeof dst, "%s/%s", dir, names[pinned]) >= (int)sizeof dst ||
		    snprintf(key, sizeof key, "%s/%s", prefix, names[pinned]) >= (int)sizeof key)
			rc = ERR_INVALID;
		if (rc == OK)
			rc = cache_pin(a, key, dst);
		if (rc != OK)
			break;
	}
	if (rc != OK)
		archive_local_done(a, prefix, names, pinned);
	return rc;
}

bool archive_local_try(archive_t *a, const char *prefix, const char *const *names, int nnames, char *dir,
		       size_t cap)
{
	if (dir_path(a, prefix, dir, cap) != OK)
		return false;
	if (!a->s3)
		return true;
	cfile_t *found[8]; /* into a->files: stable while cache_mu is held */
	bool ready = nnames <= 8;
	pthread_mutex_lock(&a->cache_mu);
	for (int i = 0; i < nnames && ready; i++) {
		char rel[PATH_MAX];
		found[i] = NULL;
		if (snprintf(rel, sizeof rel, "%s/%s", prefix, names[i]) < (int)sizeof rel)
			found[i] = cache_find(a, rel);
		ready = found[i] != NULL && !found[i]->doomed;
	}
	for (int i = 0; i < nnames && ready; i++) {
		found[i]->pins++;
		found[i]->used = ++a->clock;
	}
	pthread_mutex_unlock(&a->cache_mu);
	return ready;
}

void archive_local_done(archive_t *a, const char *prefix, const char *const *names, int nnames)
{
	if (!a->s3)
		return;
	pthread_mutex_lock(&a->cache_mu);
	for (int i = 0; i < nnames; i++) {
		char rel[PATH_MAX];
		if (snprintf(rel, sizeof rel, "%s/%s", prefix, names[i]) < (int)sizeof rel)
			cache_unpin(a, rel);
	}
	cache_evict(a); /* files read past the limit go as soon as nobody reads them */
	pthread_mutex_unlock(&a->cache_mu);
}

/* --- deleting a prefix --- */

#define S3_LIST_PAGES_MAX 100000 /* of 1,000 keys: a bound, not a limit anyone reaches */

/* nftw's callback (it takes no argument): bottom up, every file and directory. */
static _Thread_local size_t removed_files;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) == 0 || errno == ENOENT ? 0 : errno;
	if (unlink(path) != 0)
		return errno == ENOENT ? 0 : errno;
	removed_files++;
	return 0;
}

/* Removes dir and everything below it; a missing dir is not an error. */
static err_t remove_tree(const char *dir, size_t *files)
{
	removed_files = 0;
	int rc = nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	*files += removed_files;
	if (rc != 0 && errno != ENOENT)
		return ERR_SYS(rc > 0 ? rc : errno);
	return OK;
}

/* The text of the first <tag>...</tag> at or after *pos (advanced past it), XML entities decoded, into out;
 * false when there is none. */
static bool xml_next(const char *xml, const char *tag, const char **pos, char *out, size_t cap)
{
	char open_tag[64], close_tag[64];
	snprintf(open_tag, sizeof open_tag, "<%s>", tag);
	snprintf(close_tag, sizeof close_tag, "</%s>", tag);
	const char *b = strstr(*pos, open_tag);
	const char *e = b ? strstr(b, close_tag) : NULL;
	if (e == NULL)
		return false;
	b += strlen(open_tag);
	*pos = e + strlen(close_tag);
	static const char *const ent[][2] = { { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" },
					      { "&quot;", "\"" }, { "&apos;", "'" } };
	size_t n = 0;
	while (b < e && n + 1 < cap) {
		size_t k = 0;
		while (k < 5 && strncmp(b, ent[k][0], strlen(ent[k][0])) != 0)
			k++;
		out[n++] = k < 5 ? ent[k][1][0] : *b;
		b += k < 5 ? strlen(ent[k][0]) : 1;
	}
	out[n] = 0;
	(void)xml;
	return b == e;
}

/* S3: lists the keys under `prefix` (ListObjectsV2, a page at a time) and deletes each. */
static err_t s3_delete_prefix(archive_t *a, const char *prefix, size_t *deleted)
{
	char full[PATH_MAX], token[2048] = "", key[PATH_MAX];
	snprintf(full, sizeof full, "%s%s%s/", a->prefix, a->prefix[0] ? "/" : "", prefix);
	size_t skip = a->prefix[0] ? strlen(a->prefix) + 1 : 0;
	CURL *c = curl_easy_init();
	if (c == NULL)
		return ERR_SYS(ENOMEM);
	char *eprefix = curl_easy_escape(c, full, 0);
	err_t rc = OK;
	bool more = true;
	for (int page = 0; rc == OK && more && page < S3_LIST_PAGES_MAX; page++) {
		char *etoken = curl_easy_escape(c, token, 0);
		char query[PATH_MAX + 4096];
		/* canonical: parameters in name order */
		snprintf(query, sizeof query, "%s%s%slist-type=2&prefix=%s", token[0] ? "continuation-token=" : "",
			 token[0] ? etoken : "", token[0] ? "&" : "", eprefix);
		curl_free(etoken);
		buf_t body = { 0 };
		sink_t sink = { &body, NULL };
		long status;
		rc = s3_request(a, "GET", NULL, query, NULL, 0, NULL, 0, &sink, &status);
		buf_append(&body, "", 1);
		const char *xml = (const char *)body.data, *pos = xml;
		while (rc == OK && xml_next(xml, "Key", &pos, key, sizeof key)) {
			if (strncmp(key, full, strlen(full)) != 0)
				continue; /* not ours (a server that ignores prefix) */
			rc = s3_request(a, "DELETE", key + skip, NULL, NULL, 0, NULL, 0, NULL, &status);
			if (rc == ERR_NOT_FOUND)
				rc = OK;
			if (rc == OK)
				(*deleted)++;
		}
		pos = xml;
		char truncated[16] = "";
		more = xml_next(xml, "IsTruncated", &pos, truncated, sizeof truncated) && strcmp(truncated, "true") == 0;
		pos = xml;
		if (more && !xml_next(xml, "NextContinuationToken", &pos, token, sizeof token)) {
			log_warn("archive: listing %s: truncated without a continuation token", full);
			rc = ERR_SYS(EIO);
		}
		buf_free(&body);
	}
	curl_free(eprefix);
	curl_easy_cleanup(c);
	return rc;
}

err_t archive_delete_prefix(archive_t *a, const char *prefix, size_t *deleted)
{
	*deleted = 0;
	char dir[PATH_MAX];
	if (prefix[0] == 0 || strchr(prefix, '/') != NULL)
		return ERR_INVALID;
	err_t rc = dir_path(a, prefix, dir, sizeof dir);
	if (rc != OK)
		return rc;
	if (!a->s3) {
		rc = remove_tree(dir, deleted);
		return rc == OK ? fsync_dir_of(dir) : rc;
	}
	rc = s3_delete_prefix(a, prefix, deleted);
	size_t cached = 0;
	if (rc == OK)
		rc = cache_drop_prefix(a, prefix, &cached);
	return rc;
}
