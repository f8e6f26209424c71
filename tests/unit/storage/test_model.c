/*
 * test_model.c -- random appends, reads, time lookups, rolls, retention and restarts against a naive
 * in-memory reference (every record in an array). MODEL_SEEDS sets the number of seeds (default 40);
 * a failure prints its seed and step.
 */
#include "testutil.h"

#include "core/log.h"

static int64_t now_ms = 1700000000000;

typedef struct {
	int64_t ts;
	size_t vlen;
} ref_rec_t;

typedef struct {
	ref_rec_t *r;
	int64_t n, start; /* records [start, n) exist */
} ref_t;

static void check_read(partition_t *p, io_t *io, int64_t from, const ref_t *ref, uint64_t seed, int step)
{
	tu_recs_t recs = { 0 };
	err_t rc = tu_read_all(p, io, from, 1 + (int64_t)(seed % 5000), &recs);
	if (rc != OK)
		fail_msg("seed %" PRIu64 " step %d: read from %" PRId64 ": %s", seed, step, from, err_str(rc));
	if ((int64_t)recs.n != ref->n - from)
		fail_msg("seed %" PRIu64 " step %d: %zu records from %" PRId64 ", want %" PRId64, seed, step, recs.n,
			 from, ref->n - from);
	char v[1100];
	for (size_t i = 0; i < recs.n; i++) {
		int64_t o = from + (int64_t)i;
		tu_value((uint64_t)o, ref->r[o].vlen, v);
		if (recs.v[i].offset != o || recs.v[i].ts != ref->r[o].ts || strlen(recs.v[i].value) != ref->r[o].vlen ||
		    memcmp(recs.v[i].value, v, ref->r[o].vlen) != 0)
			fail_msg("seed %" PRIu64 " step %d: record at %" PRId64 " differs", seed, step, o);
	}
	tu_recs_free(&recs);
}

static void check_time(partition_t *p, const ref_t *ref, int64_t ts, uint64_t seed, int step)
{
	int64_t want = -1;
	for (int64_t o = ref->start; o < ref->n && want < 0; o++)
		if (ref->r[o].ts >= ts)
			want = o;
	int64_t got, got_ts;
	assert_int_equal(partition_offset_for_time(p, ts, &got, &got_ts), OK);
	if (got != want)
		fail_msg("seed %" PRIu64 " step %d: time %" PRId64 " -> offset %" PRId64 ", want %" PRId64, seed, step,
			 ts, got, want);
}

static void run_seed(uint64_t seed)
{
	uint64_t rng = seed;
	io_sim_t *sim = io_sim_new();
	io_t *io = io_sim_io(sim);
	clock_src_t clk;
	clock_manual_init(&clk, &now_ms);
	partition_env_t env = { io, &clk, NULL, NULL, NULL, NULL, NULL };
	partition_config_t cfg;
	tu_config(&cfg);
	cfg.segment_bytes = 4096 + (int64_t)(tu_rng(&rng) % 20000);
	cfg.index_interval_bytes = 1 + (int32_t)(tu_rng(&rng) % 3000);
	io->mkdir(io, "/p");
	partition_t *p;
	assert_int_equal(partition_open(&env, "/p/0", &cfg, &p), OK);
	ref_t ref = { calloc(200000, sizeof(ref_rec_t)), 0, 0 };
	buf_t b = { 0 };
	for (int step = 0; step < 300; step++) {
		unsigned op = (unsigned)(tu_rng(&rng) % 100);
		if (op < 60) { /* append a batch; timestamps wander, not always increasing */
			int count = 1 + (int)(tu_rng(&rng) % 12);
			size_t vlen = 24 + tu_rng(&rng) % 1000;
			int64_t ts = 100000 + (int64_t)(tu_rng(&rng) % 50000);
			tu_batch(&b, (uint64_t)ref.n, count, vlen, ts);
			partition_append_t res;
			assert_int_equal(partition_append(p, b.data, b.len, NULL, &res), OK);
			assert_int_equal(res.base_offset, ref.n);
			for (int i = 0; i < count && ref.n < 200000; i++)
				ref.r[ref.n++] = (ref_rec_t){ ts + i, vlen };
			assert_int_equal(partition_flush(p), OK);
		} else if (op < 75 && ref.n > ref.start) {
			check_read(p, io, ref.start + (int64_t)(tu_rng(&rng) % (uint64_t)(ref.n - ref.start)), &ref, seed,
				   step);
		} else if (op < 85) {
			check_time(p, &ref, 100000 + (int64_t)(tu_rng(&rng) % 52000), seed, step);
		} else if (op < 90) { /* retention by size */
			partition_info_t info;
			partition_info(p, &info);
			cfg.retention_bytes = (int64_t)(tu_rng(&rng) % (uint64_t)(info.size_bytes + 1));
			partition_set_config(p, &cfg);
			partition_apply_retention(p);
			partition_info(p, &info);
			if (info.log_start < ref.start || info.log_end != ref.n)
				fail_msg("seed %" PRIu64 " step %d: retention moved the log wrongly", seed, step);
			ref.start = info.log_start;
			cfg.retention_bytes = -1;
			partition_set_config(p, &cfg);
		} else { /* restart, cleanly or not */
			if (tu_rng(&rng) % 2) {
				partition_close(p);
			} else {
				io_sim_crash_now(sim);
				partition_discard(p);
				io_sim_recover(sim, tu_rng(&rng));
			}
			err_t rc = partition_open(&env, "/p/0", &cfg, &p);
			if (rc != OK)
				fail_msg("seed %" PRIu64 " step %d: reopen: %s", seed, step, err_str(rc));
			partition_info_t info;
			partition_info(p, &info);
			if (info.log_end != ref.n || info.log_start != ref.start)
				fail_msg("seed %" PRIu64 " step %d: reopened at [%" PRId64 ", %" PRId64 "), want [%" PRId64
					 ", %" PRId64 ")",
					 seed, step, info.log_start, info.log_end, ref.start, ref.n);
		}
	}
	check_read(p, io, ref.start, &ref, seed, -1);
	partition_close(p);
	free(ref.r);
	buf_free(&b);
	io_sim_free(sim);
}

static void test_model(void **state)
{
	(void)state;
	log_set_level(LOG_LEVEL_OFF); /* thousands of expected crash reports */
	const char *env = getenv("MODEL_SEEDS");
	int seeds = env ? atoi(env) : 40;
	for (int s = 1; s <= seeds; s++)
		run_seed((uint64_t)s);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_model) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
