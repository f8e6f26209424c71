/* archive.c -- the archive's two backends: a directory and an S3-compatible store. See archive.h. */
#include "storage/archive.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fl_assert.h"
#include "core/log.h"

struct archive {
	bool s3;
	char *root;     /* directory backend: the root; s3: the cache directory */
	char *bucket, *prefix, *endpoint, *region, *userpwd, *sigv4;
	char describe[600];
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

/* One S3 request. method: GET, PUT or DELETE. For PUT, the body is the file `in` or data/len. */
static err_t s3_request(archive_t *a, const char *method, const char *key, FILE *in, int64_t in_len,
			const void *data, size_t len, sink_t *sink, long *status)
{
	CURL *c = curl_easy_init();
	if (c == NULL)
		return ERR_SYS(ENOMEM);
	char url[PATH_MAX + 512];
	snprintf(url, sizeof url, "%s/%s/%s%s%s", a->endpoint, a->bucket, a->prefix, a->prefix[0] ? "/" : "", key);
	struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, a->sigv4);
	curl_easy_setopt(c, CURLOPT_USERPWD, a->userpwd);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 600000L);
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
	if (strncmp(o->location, "s3://", 5) == 0) {
		const char *b = o->location + 5, *slash = strchr(b, '/');
		size_t bl = slash ? (size_t)(slash - b) : strlen(b);
		if (bl == 0 || bl > 63) {
			snprintf(err, errcap, "archive %s: expected s3://BUCKET[/PREFIX]", o->location);
			free(a);
			return ERR_INVALID;
		}
		const char *ak = o->access_key ? o->access_key : getenv("AWS_ACCESS_KEY_ID");
		const char *sk = o->secret_key ? o->secret_key : getenv("AWS_SECRET_ACCESS_KEY");
		if (ak == NULL || sk == NULL || !ak[0] || !sk[0]) {
			snprintf(err, errcap, "archive %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", o->location);
			free(a);
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
	rc = s3_request(a, "PUT", key, f, (int64_t)stt.st_size, NULL, 0, NULL, &status);
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
	return s3_request(a, "PUT", key, NULL, 0, data, len, NULL, &status);
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
	return s3_request(a, "GET", key, NULL, 0, NULL, 0, &s, &status);
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
	err_t rc = s3_request(a, "DELETE", key, NULL, 0, NULL, 0, NULL, &status);
	return rc == ERR_NOT_FOUND ? OK : rc;
}

err_t archive_local_dir(archive_t *a, const char *prefix, const char *const *names, int nnames, char *dir,
			size_t cap)
{
	err_t rc = dir_path(a, prefix, dir, cap);
	if (rc != OK || !a->s3)
		return rc;
	/* S3: download what the cache lacks, each file through a temporary name. */
	for (int i = 0; i < nnames && rc == OK; i++) {
		char dst[PATH_MAX], tmp[PATH_MAX + 8], key[PATH_MAX];
		if (snprintf(dst, sizeof dst, "%s/%s", dir, names[i]) >= (int)sizeof dst ||
		    snprintf(key, sizeof key, "%s/%s", prefix, names[i]) >= (int)sizeof key)
			return ERR_INVALID;
		if (access(dst, R_OK) == 0)
			continue;
		rc = mkdirs(dst, false);
		snprintf(tmp, sizeof tmp, "%s.%d.tmp", dst, (int)gettid());
		FILE *f = rc == OK ? fopen(tmp, "wb") : NULL;
		if (rc == OK && f == NULL)
			rc = ERR_SYS(errno);
		if (rc != OK)
			break;
		sink_t s = { NULL, f };
		long status;
		rc = s3_request(a, "GET", key, NULL, 0, NULL, 0, &s, &status);
		if (fclose(f) != 0 && rc == OK)
			rc = ERR_SYS(errno);
		if (rc == OK && rename(tmp, dst) != 0)
			rc = ERR_SYS(errno);
		if (rc != OK)
			unlink(tmp);
	}
	return rc;
}
