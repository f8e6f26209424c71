/* test_io_sim.c -- the simulated disk keeps synced data and loses, keeps or tears the rest. */
#include "testutil.h"

#include <fcntl.h>

static void test_sync_survives_crash(void **state)
{
	(void)state;
	io_sim_t *sim = io_sim_new();
	io_t *io = io_sim_io(sim);
	assert_int_equal(io->mkdir(io, "/d"), OK);
	int fd = io->open(io, "/d/f", O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(io_pwrite_all(io, fd, "durable", 7, 0), OK);
	assert_int_equal(io->fdatasync(io, fd), OK);
	assert_int_equal(io_pwrite_all(io, fd, "maybe", 5, 7), OK);
	io_sim_crash_now(sim);
	assert_int_equal(io->fdatasync(io, fd), ERR_SYS(EIO)); /* a dead disk answers nothing */
	int kept = 0, dropped = 0;
	for (uint64_t seed = 1; seed <= 60; seed++) {
		/* Recover from copies of the same history by replaying it on a fresh sim each time. */
		io_sim_t *s2 = io_sim_new();
		io_t *io2 = io_sim_io(s2);
		io2->mkdir(io2, "/d");
		int f2 = io2->open(io2, "/d/f", O_RDWR | O_CREAT, 0644);
		io_pwrite_all(io2, f2, "durable", 7, 0);
		io2->fdatasync(io2, f2);
		io_pwrite_all(io2, f2, "maybe", 5, 7);
		io_sim_recover(s2, seed);
		int64_t size;
		const uint8_t *d = io_sim_file_data(s2, "/d/f", &size);
		assert_non_null(d);
		assert_true(size >= 7);
		assert_memory_equal(d, "durable", 7);
		if (size == 12 && memcmp(d + 7, "maybe", 5) == 0)
			kept++;
		if (size == 7)
			dropped++;
		io_sim_free(s2);
	}
	assert_true(kept > 0);
	assert_true(dropped > 0);
	io_sim_recover(sim, 1);
	io_sim_free(sim);
}

static void test_space_limit_and_sync_failure(void **state)
{
	(void)state;
	io_sim_t *sim = io_sim_new();
	io_t *io = io_sim_io(sim);
	int fd = io->open(io, "/f", O_RDWR | O_CREAT, 0644);
	io_sim_set_space_limit(sim, 10);
	assert_int_equal(io->pwrite(io, fd, "0123456789abc", 13, 0), 10); /* what fits */
	assert_int_equal(io->pwrite(io, fd, "x", 1, 10), ERR_SYS(ENOSPC));
	io_sim_fail_sync_at(sim, 1);
	assert_int_equal(io->fdatasync(io, fd), ERR_SYS(EIO));
	assert_int_equal(io->fdatasync(io, fd), OK);
	io_sim_free(sim);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sync_survives_crash),
		cmocka_unit_test(test_space_limit_and_sync_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
