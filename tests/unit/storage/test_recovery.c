/* test_recovery.c -- torn tails at every byte, corruption below the durable point, index rebuilds. */
#include "testutil.h"

static int64_t now_ms = 1700000000000;
#define LOG0 "/p/0/00000000000000000000.log"

typedef struct {
	io_sim_t *sim;
	io_t *io;
	clock_src_t clock;
	partition_env_t env;
	partition_config_t cfg;
} fx_t;

static void fx_init(fx_t *f)
{
	memset(f, 0, sizeof *f);
	f->sim = io_sim_new();
	f->io = io_sim_io(f->sim);
	clock_manual_init(&f->clock, &now_ms);
	f->env.io = f->io;
	f->env.clock = &f->clock;
	tu_config(&f->cfg);
	f->cfg.preallocate_bytes = 0;
	f->io->mkdir(f->io, "/p");
}

static err_t reopen(fx_t *f, partition_t **p)
{
	return partition_open(&f->env, "/p/0", &f->cfg, p);
}

/* Simulates kill -9 + power loss of nothing unsynced: the process dies, synced data stays. */
static void crash(fx_t *f, partition_t *p, uint64_t seed)
{
	io_sim_crash_now(f->sim);
	partition_discard(p);
	io_sim_recover(f->sim, seed);
}

static void test_truncate_last_batch_at_every_byte(void **state)
{
	(void)state;
	buf_t last = { 0 };
	tu_batch(&last, 30, 4, 90, now_ms);
	size_t last_len = last.len;
	buf_free(&last);
	for (size_t cut = 0; cut <= last_len; cut++) {
		fx_t f;
		fx_init(&f);
		f.cfg.checkpoint_interval_ms = INT64_MAX / 2; /* the recovery point stays at open time */
		partition_t *p;
		assert_int_equal(reopen(&f, &p), OK);
		for (int i = 0; i < 10; i++)
			tu_append_flush(p, (uint64_t)i * 3, 3, 90, now_ms);
		tu_append_flush(p, 30, 4, 90, now_ms); /* the last batch */
		crash(&f, p, 1);
		int64_t size;
		assert_non_null(io_sim_file_data(f.sim, LOG0, &size));
		assert_int_equal(io_sim_truncate_file(f.sim, LOG0, size - (int64_t)cut), OK);
		assert_int_equal(reopen(&f, &p), OK);
		partition_info_t info;
		partition_info(p, &info);
		int64_t want = cut == 0 ? 34 : 30;
		assert_int_equal(info.log_end, want);
		tu_recs_t recs = { 0 };
		assert_int_equal(tu_read_all(p, f.io, 0, 4096, &recs), OK);
		assert_int_equal(recs.n, (size_t)want);
		char v[91];
		for (size_t i = 0; i < recs.n; i++) {
			tu_value(i, 90, v);
			assert_memory_equal(recs.v[i].value, v, 90);
		}
		tu_recs_free(&recs);
		/* Appends continue at the recovered end. */
		assert_int_equal(tu_append_flush(p, (uint64_t)want, 1, 90, now_ms), want);
		partition_close(p);
		io_sim_free(f.sim);
	}
}

static void test_bit_flip_below_durable_point_stops(void **state)
{
	(void)state;
	int64_t positions[] = { 100, 700, -30 }; /* early, middle, inside the last batch */
	for (size_t k = 0; k < 3; k++) {
		fx_t f;
		fx_init(&f);
		partition_t *p;
		assert_int_equal(reopen(&f, &p), OK);
		for (int i = 0; i < 10; i++)
			tu_append_flush(p, (uint64_t)i * 3, 3, 90, now_ms); /* acked: the recovery point follows */
		crash(&f, p, 2);
		int64_t size;
		assert_non_null(io_sim_file_data(f.sim, LOG0, &size));
		int64_t at = positions[k] < 0 ? size + positions[k] : positions[k];
		assert_int_equal(io_sim_flip_bit(f.sim, LOG0, at, 3), OK);
		assert_int_equal(reopen(&f, &p), ERR_CORRUPT);
		/* Loud and stable: it keeps refusing rather than truncating acknowledged data. */
		assert_int_equal(reopen(&f, &p), ERR_CORRUPT);
		assert_non_null(io_sim_file_data(f.sim, LOG0, &size));
		assert_true(size > at);
		io_sim_free(f.sim);
	}
}

static void test_missing_acked_tail_stops(void **state)
{
	(void)state;
	fx_t f;
	fx_init(&f);
	partition_t *p;
	assert_int_equal(reopen(&f, &p), OK);
	for (int i = 0; i < 5; i++)
		tu_append_flush(p, (uint64_t)i * 3, 3, 90, now_ms);
	crash(&f, p, 3);
	int64_t size;
	assert_non_null(io_sim_file_data(f.sim, LOG0, &size));
	/* A whole acknowledged batch vanishes (a clean cut at a batch boundary). */
	assert_int_equal(io_sim_truncate_file(f.sim, LOG0, size / 2), OK);
	assert_int_equal(reopen(&f, &p), ERR_CORRUPT);
	io_sim_free(f.sim);
}

static void corrupt_index(fx_t *f, const char *path, int how)
{
	int64_t size;
	assert_non_null(io_sim_file_data(f->sim, path, &size));
	if (how == 0)
		io_sim_flip_bit(f->sim, path, size / 3, 0);
	else if (how == 1)
		io_sim_truncate_file(f->sim, path, size - 5);
	else {
		io_sim_truncate_file(f->sim, path, 0);
		io_sim_truncate_file(f->sim, path, size); /* same size, all zeros */
	}
}

static void test_corrupt_index_is_rebuilt(void **state)
{
	(void)state;
	const char *files[] = { "/p/0/00000000000000000000.index", "/p/0/00000000000000000000.timeindex" };
	for (int how = 0; how < 3; how++) {
		for (int which = 0; which < 2; which++) {
			fx_t f;
			fx_init(&f);
			f.cfg.segment_bytes = 16 * 1024;
			partition_t *p;
			assert_int_equal(reopen(&f, &p), OK);
			for (int i = 0; i < 100; i++)
				tu_append_flush(p, (uint64_t)i * 4, 4, 200, 5000 + i * 4);
			partition_info_t info;
			partition_info(p, &info);
			assert_true(info.segments >= 3);
			partition_close(p);
			corrupt_index(&f, files[which], how);
			assert_int_equal(reopen(&f, &p), OK);
			tu_recs_t recs = { 0 };
			assert_int_equal(tu_read_all(p, f.io, 0, 3000, &recs), OK);
			assert_int_equal(recs.n, 400);
			for (size_t i = 0; i < recs.n; i++)
				assert_int_equal(recs.v[i].offset, (int64_t)i);
			tu_recs_free(&recs);
			int64_t off, ts;
			assert_int_equal(partition_offset_for_time(p, 5000 + 37, &off, &ts), OK);
			assert_int_equal(off, 37);
			partition_close(p);
			/* The rebuilt index was written back and is valid again. */
			assert_int_equal(reopen(&f, &p), OK);
			partition_close(p);
			io_sim_free(f.sim);
		}
	}
}

static void test_unsealed_middle_segment_is_recovered(void **state)
{
	(void)state;
	fx_t f;
	fx_init(&f);
	partition_t *p;
	assert_int_equal(reopen(&f, &p), OK);
	for (int i = 0; i < 100; i++)
		tu_append_flush(p, (uint64_t)i * 4, 4, 200, now_ms);
	crash(&f, p, 4);
	/* As if the crash hit between a roll and the seal: the first segment lost its index files. */
	f.io->unlink(f.io, "/p/0/00000000000000000000.index");
	f.io->unlink(f.io, "/p/0/00000000000000000000.timeindex");
	assert_int_equal(reopen(&f, &p), OK);
	tu_recs_t recs = { 0 };
	assert_int_equal(tu_read_all(p, f.io, 0, 3000, &recs), OK);
	assert_int_equal(recs.n, 400);
	tu_recs_free(&recs);
	partition_close(p);
	int64_t size;
	assert_non_null(io_sim_file_data(f.sim, "/p/0/00000000000000000000.index", &size));
	io_sim_free(f.sim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncate_last_batch_at_every_byte),
		cmocka_unit_test(test_bit_flip_below_durable_point_stops),
		cmocka_unit_test(test_missing_acked_tail_stops),
		cmocka_unit_test(test_corrupt_index_is_rebuilt),
		cmocka_unit_test(test_unsealed_middle_segment_is_recovered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
