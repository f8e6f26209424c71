/* test_partition.c -- append, read, roll, retention, timestamps, restart, waiters, faults. */
#include <fcntl.h>

#include "testutil.h"

static int64_t now_ms = 1700000000000;

typedef struct {
	io_sim_t *sim;
	io_t *io;
	clock_src_t clock;
	partition_env_t env;
	partition_config_t cfg;
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	f->sim = io_sim_new();
	f->io = io_sim_io(f->sim);
	clock_manual_init(&f->clock, &now_ms);
	f->env.io = f->io;
	f->env.clock = &f->clock;
	tu_config(&f->cfg);
	f->io->mkdir(f->io, "/p");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	io_sim_free(f->sim);
	free(f);
	return 0;
}

static partition_t *open_p(fx_t *f)
{
	partition_t *p = NULL;
	assert_int_equal(partition_open(&f->env, "/p/0", &f->cfg, &p), OK);
	return p;
}

static void check_values(partition_t *p, io_t *io, int64_t from, uint64_t first_id, size_t n, size_t vlen)
{
	tu_recs_t recs = { 0 };
	assert_int_equal(tu_read_all(p, io, from, 4096, &recs), OK);
	assert_int_equal(recs.n, n);
	char *want = malloc(vlen + 1);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(recs.v[i].offset, from + (int64_t)i);
		tu_value(first_id + i, vlen, want);
		assert_int_equal(strlen(recs.v[i].value), vlen);
		assert_memory_equal(recs.v[i].value, want, vlen);
	}
	free(want);
	tu_recs_free(&recs);
}

static void test_append_assigns_dense_offsets(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	uint64_t id = 0;
	for (int i = 0; i < 50; i++) {
		int n = 1 + i % 9;
		assert_int_equal(tu_append_flush(p, id, n, 100, now_ms), (int64_t)id);
		id += (uint64_t)n;
	}
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.log_start, 0);
	assert_int_equal(info.log_end, (int64_t)id);
	assert_int_equal(info.hwm, (int64_t)id);
	check_values(p, f->io, 0, 0, id, 100);
	/* A read from the middle of a batch returns the batch that contains the offset. */
	log_range_t r;
	assert_int_equal(partition_read(p, 3, 1, &r), OK);
	assert_true(r.first_offset <= 3);
	assert_true(r.next_offset > 3);
	assert_true(r.len > 0); /* at least one whole batch even above max_bytes */
	log_range_release(&r);
	/* At the high watermark: empty. Beyond it: out of range. */
	assert_int_equal(partition_read(p, (int64_t)id, 4096, &r), OK);
	assert_int_equal(r.len, 0);
	assert_int_equal(partition_read(p, (int64_t)id + 1, 4096, &r), ERR_OUT_OF_RANGE);
	/* Written but not yet durable: empty, not out of range (a consumer must not reset). */
	buf_t nb = { 0 };
	tu_batch(&nb, id, 2, 100, now_ms);
	partition_append_t ares;
	assert_int_equal(partition_append(p, nb.data, nb.len, NULL, &ares), OK);
	assert_int_equal(partition_read(p, (int64_t)id + 1, 4096, &r), OK);
	assert_int_equal(r.len, 0);
	assert_int_equal(partition_read(p, (int64_t)id + 3, 4096, &r), ERR_OUT_OF_RANGE);
	buf_free(&nb);
	assert_int_equal(partition_read(p, -1, 4096, &r), ERR_OUT_OF_RANGE);
	partition_close(p);
}

static void test_hwm_waits_for_fsync(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	buf_t b = { 0 };
	tu_batch(&b, 0, 3, 50, now_ms);
	partition_append_t res;
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), OK);
	assert_false(res.ack_now);
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.log_end, 3);
	assert_int_equal(info.hwm, 0); /* not durable yet: invisible to readers */
	log_range_t r;
	assert_int_equal(partition_read(p, 0, 4096, &r), OK);
	assert_int_equal(r.len, 0);
	int64_t off, ts; /* a timestamp lookup does not see it either (and is not an error) */
	assert_int_equal(partition_offset_for_time(p, 0, &off, &ts), OK);
	assert_int_equal(off, -1);
	assert_int_equal(partition_flush(p), OK);
	assert_int_equal(partition_offset_for_time(p, 0, &off, &ts), OK);
	assert_int_equal(off, 0);
	partition_info(p, &info);
	assert_int_equal(info.hwm, 3);
	buf_free(&b);
	partition_close(p);
}

static int waiter_calls;
static err_t waiter_status;
static void on_waiter(partition_waiter_t *w, err_t status)
{
	(void)w;
	waiter_calls++;
	waiter_status = status;
}

static void test_waiters_complete_once_after_flush(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	buf_t b = { 0 };
	partition_waiter_t w[3];
	waiter_calls = 0;
	for (int i = 0; i < 3; i++) {
		tu_batch(&b, (uint64_t)i * 2, 2, 50, now_ms);
		memset(&w[i], 0, sizeof w[i]);
		w[i].cb = on_waiter;
		partition_append_t res;
		assert_int_equal(partition_append(p, b.data, b.len, &w[i], &res), OK);
		assert_false(res.ack_now);
	}
	assert_int_equal(waiter_calls, 0); /* never inside the registering call */
	assert_int_equal(partition_flush(p), OK);
	assert_int_equal(waiter_calls, 3);
	assert_int_equal(waiter_status, OK);
	assert_int_equal(partition_flush(p), OK);
	assert_int_equal(waiter_calls, 3);
	/* An offset already durable needs no waiter. */
	partition_waiter_t w2 = { .cb = on_waiter };
	assert_int_equal(partition_wait(p, 5, &w2), 1);
	assert_int_equal(partition_wait(p, 6, &w2), ERR_OUT_OF_RANGE);
	buf_free(&b);
	partition_close(p);
}

static void test_roll_and_reopen(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	uint64_t id = 0;
	for (int i = 0; i < 200; i++) {
		tu_append_flush(p, id, 4, 200, now_ms + i);
		id += 4;
	}
	partition_info_t info;
	partition_info(p, &info);
	assert_true(info.segments >= 3); /* 64 KiB segments, ~190 KiB of data */
	check_values(p, f->io, 0, 0, id, 200);
	partition_close(p);
	/* A clean shutdown reopens without a scan and continues the offsets. */
	p = open_p(f);
	partition_info(p, &info);
	assert_int_equal(info.log_end, (int64_t)id);
	assert_int_equal(tu_append_flush(p, id, 4, 200, now_ms), (int64_t)id);
	id += 4;
	check_values(p, f->io, 0, 0, id, 200);
	check_values(p, f->io, 333, 333, id - 333, 200);
	partition_close(p);
}

static void test_roll_by_age(void **state)
{
	fx_t *f = *state;
	f->cfg.segment_ms = 1000;
	partition_t *p = open_p(f);
	tu_append_flush(p, 0, 1, 50, now_ms);
	now_ms += 500;
	tu_append_flush(p, 1, 1, 50, now_ms);
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.segments, 1);
	now_ms += 600;
	tu_append_flush(p, 2, 1, 50, now_ms);
	partition_info(p, &info);
	assert_int_equal(info.segments, 2);
	partition_close(p);
}

static void test_retention_by_size_and_age(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	uint64_t id = 0;
	for (int i = 0; i < 300; i++) {
		tu_append_flush(p, id, 4, 200, now_ms - 10 * 86400000ll + i);
		id += 4;
	}
	partition_info_t before, after;
	partition_info(p, &before);
	f->cfg.retention_ms = -1;
	f->cfg.retention_bytes = 100 * 1024;
	partition_set_config(p, &f->cfg);
	assert_true(partition_apply_retention(p) > 0);
	partition_info(p, &after);
	assert_true(after.size_bytes >= 100 * 1024);
	assert_true(after.size_bytes < before.size_bytes);
	assert_true(after.log_start > 0);
	assert_int_equal(after.log_end, before.log_end);
	/* Reading below the log start is out of range; from it, everything is there. */
	log_range_t r;
	assert_int_equal(partition_read(p, 0, 4096, &r), ERR_OUT_OF_RANGE);
	check_values(p, f->io, after.log_start, (uint64_t)after.log_start, id - (uint64_t)after.log_start, 200);
	/* Age: every sealed segment is 10 days old; the active one stays. */
	f->cfg.retention_bytes = -1;
	f->cfg.retention_ms = 86400000;
	partition_set_config(p, &f->cfg);
	assert_true(partition_apply_retention(p) > 0);
	partition_info(p, &after);
	assert_int_equal(after.segments, 1);
	partition_close(p);
	/* Deleted segments stay deleted after a restart. */
	p = open_p(f);
	partition_info_t again;
	partition_info(p, &again);
	assert_int_equal(again.log_start, after.log_start);
	assert_int_equal(again.log_end, after.log_end);
	partition_close(p);
}

static void test_offset_for_time(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	/* 100 batches of 5 records; record k has timestamp 10000 + 10 * k (batches are ts, ts+1, ...). */
	for (int i = 0; i < 100; i++)
		tu_append_flush(p, (uint64_t)i * 5, 5, 300, 10000 + 10 * i * 5);
	int64_t off, ts;
	assert_int_equal(partition_offset_for_time(p, 0, &off, &ts), OK);
	assert_int_equal(off, 0);
	/* Batch 40 covers timestamps 12000..12004: the exact record is found. */
	assert_int_equal(partition_offset_for_time(p, 12002, &off, &ts), OK);
	assert_int_equal(off, 202);
	assert_int_equal(ts, 12002);
	/* Between batches: the next batch's first record. */
	assert_int_equal(partition_offset_for_time(p, 12005, &off, &ts), OK);
	assert_int_equal(off, 205);
	assert_int_equal(partition_offset_for_time(p, 1 << 30, &off, &ts), OK);
	assert_int_equal(off, -1);
	assert_int_equal(ts, -1);
	partition_close(p);
	p = open_p(f); /* the same answers from sealed, lazily loaded time indexes */
	assert_int_equal(partition_offset_for_time(p, 12002, &off, &ts), OK);
	assert_int_equal(off, 202);
	assert_int_equal(partition_offset_for_time(p, 10003, &off, &ts), OK);
	assert_int_equal(off, 3);
	partition_close(p);
}

/* ---- the archive: reads below the local segments, and local retention that waits for it ---- */

static int arch_fetches, arch_releases; /* every successful fetch is released exactly once */
static bool arch_remote;                /* the files are "not local": a fetch that may not wait says so */
static int arch_started;                /* fetches started in the background for such readers */

static err_t fetch_from_arch(void *arg, const archived_seg_t *seg, bool nowait, char *dir, size_t cap)
{
	(void)seg;
	if (nowait && arch_remote) {
		arch_started++;
		return ERR_AGAIN;
	}
	snprintf(dir, cap, "%s", (const char *)arg);
	arch_fetches++;
	return OK;
}

static void release_to_arch(void *arg, int64_t base)
{
	(void)arg;
	(void)base;
	arch_releases++;
	assert_true(arch_releases <= arch_fetches);
}

/* Copies a segment's three files from /p/0 into /arch (what the archiver does). */
static void archive_copy(io_t *io, int64_t base)
{
	static const char *const exts[] = { ".log", ".index", ".timeindex" };
	for (int i = 0; i < 3; i++) {
		char src[64], name[40];
		snprintf(name, sizeof name, "%020lld%s", (long long)base, exts[i]);
		snprintf(src, sizeof src, "/p/0/%s", name);
		int fd = io->open(io, src, O_RDONLY, 0);
		assert_true(fd >= 0);
		int64_t size = 0;
		assert_int_equal(io->fsize(io, fd, &size), OK);
		void *buf = malloc((size_t)size + 1);
		assert_int_equal(io_pread_all(io, fd, buf, (size_t)size, 0), OK);
		io->close(io, fd);
		assert_int_equal(io_write_file_atomic(io, "/arch", name, buf, (size_t)size), OK);
		free(buf);
	}
}

static void test_archive_reads_and_local_retention(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	uint64_t id = 0;
	for (int i = 0; i < 300; i++) { /* record k has timestamp 50000 + k */
		tu_append_flush(p, id, 4, 200, 50000 + (int64_t)id);
		id += 4;
	}
	f->cfg.retention_ms = -1;
	f->cfg.retention_bytes = -1;
	f->cfg.remote_storage = true;
	f->cfg.local_retention_bytes = 1;
	partition_set_config(p, &f->cfg);
	partition_info_t before, info;
	partition_info(p, &before);
	assert_true(before.segments > 3);
	/* Nothing archived yet: local retention drops nothing, however small it is. */
	assert_int_equal(partition_apply_retention(p), 0);
	archived_seg_t *sealed;
	size_t ns = partition_sealed_segments(p, -1, &sealed);
	assert_int_equal(ns, (size_t)before.segments - 1);
	assert_int_equal(sealed[0].base, 0);
	for (size_t i = 1; i < ns; i++)
		assert_int_equal(sealed[i].base, sealed[i - 1].next); /* contiguous */
	assert_int_equal(f->io->mkdir(f->io, "/arch"), OK);
	for (size_t i = 0; i < ns; i++)
		archive_copy(f->io, sealed[i].base);
	/* Only the first two archived: retention drops exactly those, not the unarchived ones after them. */
	partition_set_archive(p, sealed, 2, fetch_from_arch, release_to_arch, (void *)"/arch");
	assert_int_equal(partition_archived_end(p), sealed[1].next);
	assert_int_equal(partition_apply_retention(p), 2);
	partition_info(p, &info);
	assert_int_equal(info.local_log_start, sealed[1].next);
	assert_int_equal(info.log_start, 0); /* the archive continues the log */
	assert_int_equal(info.archived_segments, 2);
	/* All archived: every sealed segment leaves the disk; the log still reads whole from offset 0. */
	partition_set_archive(p, sealed, ns, fetch_from_arch, release_to_arch, (void *)"/arch");
	assert_int_equal(partition_apply_retention(p), (int)ns - 2);
	partition_info(p, &info);
	assert_int_equal(info.segments, 1);
	assert_int_equal(info.local_log_start, sealed[ns - 1].next);
	assert_int_equal(info.log_start, 0);
	/* A reader that may not wait (an event loop) gets ERR_AGAIN while the segment is not local, and the
	 * same data as anyone once it is. */
	log_range_t r;
	arch_remote = true;
	assert_int_equal(partition_read_nowait(p, 0, 4096, &r), ERR_AGAIN);
	assert_int_equal(arch_started, 1);
	assert_int_equal(r.len, 0);
	arch_remote = false;
	assert_int_equal(partition_read_nowait(p, 0, 4096, &r), OK);
	assert_int_equal(r.first_offset, 0);
	assert_true(r.len > 0);
	log_range_release(&r);
	check_values(p, f->io, 0, 0, id, 200);
	check_values(p, f->io, 37, 37, id - 37, 200); /* from inside an archived batch */
	int64_t off, ts;
	assert_int_equal(partition_offset_for_time(p, 50000 + 101, &off, &ts), OK);
	assert_int_equal(off, 101);
	assert_int_equal(ts, 50000 + 101);
	/* An archived segment that does not match its manifest entry is an error, not a wrong answer. */
	archived_seg_t bad = sealed[0];
	bad.next += 1;
	partition_set_archive(p, &bad, 1, fetch_from_arch, release_to_arch, (void *)"/nowhere");
	assert_true(partition_read(p, 0, 4096, &r) != OK);
	/* Forgetting the archive: below the local segments is out of range again. */
	partition_set_archive(p, NULL, 0, NULL, NULL, NULL);
	partition_info(p, &info);
	assert_int_equal(info.log_start, info.local_log_start);
	assert_int_equal(partition_read(p, 0, 4096, &r), ERR_OUT_OF_RANGE);
	free(sealed);
	partition_close(p);
	assert_true(arch_fetches > 0);
	assert_int_equal(arch_releases, arch_fetches); /* the open archived segments were closed */
}

static void test_log_append_time(void **state)
{
	fx_t *f = *state;
	f->cfg.log_append_time = true;
	partition_t *p = open_p(f);
	tu_append_flush(p, 0, 3, 40, 5);
	tu_recs_t recs = { 0 };
	assert_int_equal(tu_read_all(p, f->io, 0, 4096, &recs), OK);
	assert_int_equal(recs.n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(recs.v[i].ts, now_ms);
	tu_recs_free(&recs);
	partition_close(p);
}

static void test_bad_batches_are_refused(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	buf_t b = { 0 };
	partition_append_t res;
	tu_batch(&b, 0, 3, 50, now_ms);
	b.data[40] ^= 1;
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), ERR_CRC);
	b.data[40] ^= 1;
	f->cfg.max_message_bytes = (int32_t)b.len - 1;
	partition_set_config(p, &f->cfg);
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), ERR_TOO_LARGE);
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.log_end, 0); /* nothing was written */
	assert_int_equal(info.size_bytes, 0);
	buf_free(&b);
	partition_close(p);
}

static void test_fsync_failure_is_sticky(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	tu_append_flush(p, 0, 2, 50, now_ms);
	buf_t b = { 0 };
	tu_batch(&b, 2, 2, 50, now_ms);
	partition_waiter_t w = { .cb = on_waiter };
	partition_append_t res;
	waiter_calls = 0;
	assert_int_equal(partition_append(p, b.data, b.len, &w, &res), OK);
	io_sim_fail_sync_at(f->sim, 1);
	assert_int_equal(partition_flush(p), ERR_SYS(EIO));
	assert_int_equal(waiter_calls, 1);
	assert_int_equal(waiter_status, ERR_FAILED); /* never acknowledged */
	/* Never retried: the next flush and every append fail too. */
	assert_int_equal(partition_flush(p), ERR_FAILED);
	tu_batch(&b, 4, 2, 50, now_ms);
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), ERR_FAILED);
	log_range_t r;
	assert_int_equal(partition_read(p, 0, 4096, &r), ERR_FAILED);
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.failed, ERR_SYS(EIO));
	assert_int_equal(info.hwm, 2);
	partition_close(p);
	/* Reopening recovers from disk: the acknowledged batch is there. */
	p = open_p(f);
	partition_info(p, &info);
	assert_int_equal(info.failed, OK);
	/* The unacknowledged batch may survive (it reached the page cache); the acknowledged one must. */
	assert_true(info.log_end == 2 || info.log_end == 4);
	check_values(p, f->io, 0, 0, (size_t)info.log_end, 50);
	buf_free(&b);
	partition_close(p);
}

static void test_enospc_leaves_no_partial_batch(void **state)
{
	fx_t *f = *state;
	f->cfg.preallocate_bytes = 0;
	partition_t *p = open_p(f);
	tu_append_flush(p, 0, 2, 50, now_ms);
	partition_info_t info;
	partition_info(p, &info);
	int64_t used = 0, sz;
	const char *files[] = { "/p/0/00000000000000000000.log", "/p/0/recovery-point" };
	for (int i = 0; i < 2; i++)
		if (io_sim_file_data(f->sim, files[i], &sz))
			used += sz;
	io_sim_set_space_limit(f->sim, used + 100); /* room for a part of the next batch */
	buf_t b = { 0 };
	tu_batch(&b, 2, 5, 60, now_ms);
	partition_append_t res;
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), ERR_SYS(ENOSPC));
	partition_info_t after;
	partition_info(p, &after);
	assert_int_equal(after.failed, OK); /* not sticky */
	assert_int_equal(after.log_end, info.log_end);
	assert_int_equal(after.size_bytes, info.size_bytes);
	const uint8_t *d = io_sim_file_data(f->sim, files[0], &sz);
	assert_non_null(d);
	assert_int_equal(sz, info.size_bytes); /* the partial write was cut off */
	/* Space comes back: appends work again and everything reads back. */
	io_sim_set_space_limit(f->sim, 0);
	tu_batch(&b, 2, 5, 50, now_ms);
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), OK);
	assert_int_equal(res.base_offset, 2);
	assert_int_equal(partition_flush(p), OK);
	check_values(p, f->io, 0, 0, 7, 50);
	buf_free(&b);
	partition_close(p);
}

/* An io_t in front of the sim that watches writes of zeros only: the flusher's zeros ahead of the data. */
typedef struct {
	io_t io; /* first: the partition calls through it */
	io_t *sim;
	int64_t data_end[64]; /* per descriptor: the end of the furthest write that held data */
	int zero_writes;
	bool zero_over_data; /* a zero write started below data already written */
} zio_t;

#define ZIO(io) ((zio_t *)(void *)(io))
static int zio_open(io_t *io, const char *path, int flags, int mode)
{
	int fd = ZIO(io)->sim->open(ZIO(io)->sim, path, flags, mode);
	assert_true(fd < 64);
	if (fd >= 0)
		ZIO(io)->data_end[fd] = 0;
	return fd;
}
static int zio_close(io_t *io, int fd) { return ZIO(io)->sim->close(ZIO(io)->sim, fd); }
static ssize_t zio_pread(io_t *io, int fd, void *buf, size_t len, int64_t off)
{
	return ZIO(io)->sim->pread(ZIO(io)->sim, fd, buf, len, off);
}
static int zio_fdatasync(io_t *io, int fd) { return ZIO(io)->sim->fdatasync(ZIO(io)->sim, fd); }
static int zio_ftruncate(io_t *io, int fd, int64_t len) { return ZIO(io)->sim->ftruncate(ZIO(io)->sim, fd, len); }
static int zio_fallocate(io_t *io, int fd, int64_t off, int64_t len)
{
	return ZIO(io)->sim->fallocate(ZIO(io)->sim, fd, off, len);
}
static int zio_fsize(io_t *io, int fd, int64_t *size) { return ZIO(io)->sim->fsize(ZIO(io)->sim, fd, size); }
static int zio_unlink(io_t *io, const char *path) { return ZIO(io)->sim->unlink(ZIO(io)->sim, path); }
static int zio_rename(io_t *io, const char *a, const char *b) { return ZIO(io)->sim->rename(ZIO(io)->sim, a, b); }
static int zio_mkdir(io_t *io, const char *path) { return ZIO(io)->sim->mkdir(ZIO(io)->sim, path); }
static int zio_rmdir(io_t *io, const char *path) { return ZIO(io)->sim->rmdir(ZIO(io)->sim, path); }
static int zio_list(io_t *io, const char *dir, io_list_fn fn, void *arg)
{
	return ZIO(io)->sim->list(ZIO(io)->sim, dir, fn, arg);
}
static int zio_fsync_dir(io_t *io, const char *dir) { return ZIO(io)->sim->fsync_dir(ZIO(io)->sim, dir); }

static ssize_t zio_pwrite(io_t *io, int fd, const void *buf, size_t len, int64_t off)
{
	zio_t *z = ZIO(io);
	const uint8_t *b = buf;
	bool zeros = len >= 4096 && b[0] == 0 && memcmp(b, b + 1, len - 1) == 0; /* no batch is all zeros */
	assert_true(fd >= 0 && fd < 64);
	if (zeros) {
		z->zero_writes++;
		if (off < z->data_end[fd])
			z->zero_over_data = true;
	} else if (off + (int64_t)len > z->data_end[fd]) {
		z->data_end[fd] = off + (int64_t)len;
	}
	return z->sim->pwrite(z->sim, fd, buf, len, off);
}

static void zio_init(zio_t *z, io_t *sim)
{
	memset(z, 0, sizeof *z);
	z->sim = sim;
	z->io = (io_t){ zio_open, zio_close, zio_pwrite, zio_pread, zio_fdatasync, zio_ftruncate, zio_fallocate,
			zio_fsize, zio_unlink, zio_rename, zio_mkdir, zio_rmdir, zio_list, zio_fsync_dir };
}

/* Small flush rounds get real zeros written ahead of the data, inside the preallocated span and never over
 * data; large rounds do not; everything reads back, after a reopen and after a simulated power loss. */
static void test_zeros_ahead_of_small_rounds(void **state)
{
	fx_t *f = *state;
	zio_t z;
	zio_init(&z, f->io);
	f->env.io = &z.io;
	f->cfg.segment_bytes = 8 << 20;
	f->cfg.preallocate_bytes = 1 << 20;
	partition_t *p = open_p(f);
	uint64_t id = 0;
	for (int i = 0; i < 600; i++, id += 2) /* a few hundred bytes a round: well under the threshold */
		tu_append_flush(p, id, 2, 150, now_ms);
	partition_info_t info;
	partition_info(p, &info);
	assert_true(z.zero_writes > 0);
	assert_false(z.zero_over_data);
	int64_t sz;
	assert_non_null(io_sim_file_data(f->sim, "/p/0/00000000000000000000.log", &sz));
	assert_true(sz <= info.size_bytes + f->cfg.preallocate_bytes); /* within what preallocation spans */
	check_values(p, &z.io, 0, 0, id, 150);
	/* Large rounds: once the average climbs past the threshold, no more zeros. */
	for (int i = 0; i < 40; i++, id += 250) /* about 45 KiB a round */
		tu_append_flush(p, id, 250, 150, now_ms);
	int before = z.zero_writes;
	for (int i = 0; i < 40; i++, id += 250)
		tu_append_flush(p, id, 250, 150, now_ms);
	assert_int_equal(z.zero_writes, before);
	assert_false(z.zero_over_data);
	partition_close(p);
	p = open_p(f);
	check_values(p, &z.io, 0, 0, id, 150);
	/* A power loss tears or drops what was not synced (zeros ahead included): every durable record
	 * stays. */
	uint64_t durable = id + 600;
	for (int i = 0; i < 300; i++, id += 2)
		tu_append_flush(p, id, 2, 150, now_ms);
	buf_t b = { 0 };
	tu_batch(&b, id, 3, 150, now_ms);
	partition_append_t res;
	assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), OK); /* not flushed: may be lost */
	buf_free(&b);
	assert_int_equal(id, durable);
	partition_discard(p);
	io_sim_recover(f->sim, 7);
	p = open_p(f);
	partition_info(p, &info);
	assert_true(info.log_end == (int64_t)id || info.log_end == (int64_t)id + 3);
	check_values(p, &z.io, 0, 0, (size_t)info.log_end, 150);
	assert_false(z.zero_over_data);
	partition_close(p);
}

static err_t append_idem(partition_t *p, int16_t epoch, int32_t seq, int count, partition_append_t *res)
{
	rb_builder_t b;
	rb_builder_init(&b, 7, epoch, seq);
	for (int i = 0; i < count; i++)
		rb_builder_add(&b, now_ms, slice_cstr("k"), slice_cstr("v"), NULL, 0);
	rb_builder_finish(&b);
	err_t rc = partition_append(p, b.buf.data, b.buf.len, NULL, res);
	rb_builder_free(&b);
	return rc;
}

static void test_idempotent_producer_rules(void **state)
{
	fx_t *f = *state;
	partition_t *p = open_p(f);
	partition_append_t res;
	assert_int_equal(append_idem(p, 0, 0, 3, &res), OK); /* offsets 0..2, seq 0..2 */
	assert_false(res.duplicate);
	assert_int_equal(append_idem(p, 0, 0, 3, &res), OK); /* a retry */
	assert_true(res.duplicate);
	assert_int_equal(res.base_offset, 0);
	assert_int_equal(res.last_offset, 2);
	assert_int_equal(append_idem(p, 0, 5, 1, &res), ERR_SEQUENCE); /* a gap */
	assert_int_equal(append_idem(p, 0, 3, 2, &res), OK);           /* offsets 3..4 */
	assert_int_equal(res.base_offset, 3);
	assert_int_equal(append_idem(p, 1, 4, 1, &res), ERR_SEQUENCE); /* a new epoch starts at 0 */
	assert_int_equal(append_idem(p, 1, 0, 1, &res), OK);           /* librdkafka's local epoch bump */
	assert_int_equal(append_idem(p, 0, 5, 1, &res), ERR_FENCED);   /* the old epoch is fenced */
	partition_info_t info;
	partition_info(p, &info);
	assert_int_equal(info.log_end, 6);
	assert_int_equal(partition_flush(p), OK);
	partition_close(p);
	/* After a restart the state is rebuilt from the log: the last batch's retry is still a duplicate. */
	p = open_p(f);
	assert_int_equal(append_idem(p, 1, 0, 1, &res), OK);
	assert_true(res.duplicate);
	assert_int_equal(res.base_offset, 5);
	assert_int_equal(append_idem(p, 1, 1, 1, &res), OK);
	assert_false(res.duplicate);
	assert_int_equal(res.base_offset, 6);
	partition_close(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_assigns_dense_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hwm_waits_for_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_waiters_complete_once_after_flush, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roll_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roll_by_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_by_size_and_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offset_for_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_archive_reads_and_local_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_append_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_batches_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsync_failure_is_sticky, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_leaves_no_partial_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_producer_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zeros_ahead_of_small_rounds, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
