/* test_archive.c -- the archive's parts that need no network: deleting a prefix from a directory archive,
 * and the S3 download cache's index (what a start finds, trimmed to the limit, oldest first; hits pin and
 * release without a request). The S3 requests themselves run against s3rver in tests/integration/archive. */
#include "testutil.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "storage/archive.h"
#include "storage/io.h"

static archive_t *open_dir_archive(void)
{
	char root[128], err[256];
	snprintf(root, sizeof root, "%s/arch", tu_dir);
	archive_opts_t o = { .location = root };
	archive_t *a = NULL;
	assert_int_equal(archive_open(&o, &a, err, sizeof err), OK);
	return a;
}

static void test_delete_prefix_directory(void **state)
{
	(void)state;
	archive_t *a = open_dir_archive();
	static const char *const ours[] = { "t-1/0/manifest", "t-1/0/00000000000000000000.log", "t-1/1/manifest",
					    "t-1/1/00000000000000000000.log.tmp" };
	static const char *const theirs[] = { "t-10/0/manifest", "u-1/0/manifest", "t-1x/0/manifest" };
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(archive_put_bytes(a, ours[i], "x", 1), OK);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(archive_put_bytes(a, theirs[i], "yy", 2), OK);
	size_t n = 99;
	assert_int_equal(archive_delete_prefix(a, "t-1", &n), OK);
	assert_int_equal(n, 4); /* the stray .tmp too: everything under the prefix */
	buf_t b = { 0 };
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(archive_get_bytes(a, ours[i], &b), ERR_NOT_FOUND);
	for (size_t i = 0; i < 3; i++) { /* neighbours, even with the same beginning, stay */
		assert_int_equal(archive_get_bytes(a, theirs[i], &b), OK);
		assert_int_equal(b.len, 2);
	}
	char gone[128];
	snprintf(gone, sizeof gone, "%s/arch/t-1", tu_dir);
	assert_int_equal(access(gone, F_OK), -1);
	/* again: nothing left, not an error */
	assert_int_equal(archive_delete_prefix(a, "t-1", &n), OK);
	assert_int_equal(n, 0);
	/* a prefix is one path component */
	assert_int_equal(archive_delete_prefix(a, "", &n), ERR_INVALID);
	assert_int_equal(archive_delete_prefix(a, "t-10/0", &n), ERR_INVALID);
	assert_int_equal(archive_delete_prefix(a, "..", &n), ERR_INVALID);
	assert_int_equal(archive_get_bytes(a, theirs[0], &b), OK);
	buf_free(&b);
	archive_close(a);
}

/* Writes a cache file of `bytes` bytes whose modification time is `age_s` seconds ago. */
static void cache_file(const char *cache, const char *rel, size_t bytes, int age_s)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", cache, rel);
	for (char *p = path + strlen(tu_dir) + 1; (p = strchr(p, '/')) != NULL; p++) { /* mkdir -p of the parents */
		*p = 0;
		assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
		*p = '/';
	}
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	for (size_t i = 0; i < bytes; i++)
		fputc('c', f);
	fclose(f);
	struct timeval tv[2];
	gettimeofday(&tv[0], NULL);
	tv[0].tv_sec -= age_s;
	tv[1] = tv[0];
	assert_int_equal(utimes(path, tv), 0);
}

static bool exists(const char *cache, const char *rel)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", cache, rel);
	return access(path, F_OK) == 0;
}

static archive_t *open_s3_archive(const char *cache, int64_t limit)
{
	char err[256];
	/* nothing listens on port 1: a request would fail, so the cases below must make none */
	archive_opts_t o = { .location = "s3://bucket/pre", .s3_endpoint = "http://127.0.0.1:1",
			     .access_key = "k", .secret_key = "s", .cache_dir = cache, .cache_bytes_max = limit };
	archive_t *a = NULL;
	assert_int_equal(archive_open(&o, &a, err, sizeof err), OK);
	return a;
}

static void test_s3_cache_index_at_start(void **state)
{
	(void)state;
	char cache[128];
	snprintf(cache, sizeof cache, "%s/cache", tu_dir);
	cache_file(cache, "t-1/0/A.log", 40000, 300);
	cache_file(cache, "t-1/0/B.log", 40000, 200);
	cache_file(cache, "t-1/1/C.log", 40000, 100);
	cache_file(cache, "t-1/1/D.log.77.tmp", 5000, 50); /* a download cut short */
	archive_t *a = open_s3_archive(cache, 100000);
	/* 120,000 bytes found, limit 100,000: the oldest goes, and the interrupted download */
	assert_int_equal(archive_cache_bytes(a), 80000);
	assert_false(exists(cache, "t-1/0/A.log"));
	assert_false(exists(cache, "t-1/1/D.log.77.tmp"));
	assert_true(exists(cache, "t-1/0/B.log"));
	assert_true(exists(cache, "t-1/1/C.log"));
	archive_close(a);

	/* a cached file is handed out without a request, pinned until done */
	a = open_s3_archive(cache, 100000);
	assert_int_equal(archive_cache_bytes(a), 80000);
	const char *names[] = { "B.log" };
	char got[256], want[256];
	assert_int_equal(archive_local_dir(a, "t-1/0", names, 1, got, sizeof got), OK);
	snprintf(want, sizeof want, "%s/t-1/0", cache);
	assert_string_equal(got, want);
	archive_local_done(a, "t-1/0", names, 1);
	/* a missing one needs the (unreachable) store: an error, and nothing stays pinned or counted */
	const char *both[] = { "B.log", "E.log" };
	assert_int_not_equal(archive_local_dir(a, "t-1/0", both, 2, got, sizeof got), OK);
	assert_int_equal(archive_cache_bytes(a), 80000);
	assert_false(exists(cache, "t-1/0/E.log"));
	archive_close(a);

	/* a smaller limit at the next start, which orders the files by age: B, older than C, goes */
	a = open_s3_archive(cache, 50000);
	assert_int_equal(archive_cache_bytes(a), 40000);
	assert_false(exists(cache, "t-1/0/B.log"));
	assert_false(exists(cache, "t-1/0")); /* an emptied directory goes too */
	assert_true(exists(cache, "t-1/1/C.log"));
	archive_close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delete_prefix_directory, tu_dir_setup, tu_dir_teardown),
		cmocka_unit_test_setup_teardown(test_s3_cache_index_at_start, tu_dir_setup, tu_dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
