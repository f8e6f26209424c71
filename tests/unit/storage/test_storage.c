/* test_storage.c -- topics, configs and the flusher thread on the real file system (a temp directory). */
#include "testutil.h"

#include <pthread.h>
#include <unistd.h>
#include <dirent.h>

#include "storage/storage.h"

static storage_t *open_st(void)
{
	storage_opts_t o;
	storage_opts_default(&o, tu_dir);
	o.defaults.segment_bytes = 4096;
	o.retention_check_ms = 50;
	storage_t *st = NULL;
	assert_int_equal(storage_open(&o, &st), OK);
	return st;
}

typedef struct {
	partition_waiter_t w;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
	err_t status;
} wait_t;

static void on_done(partition_waiter_t *w, err_t status)
{
	wait_t *x = w->arg;
	pthread_mutex_lock(&x->mu);
	x->done = 1;
	x->status = status;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->mu);
}

/* Appends through the flusher thread and waits for the durability callback. */
static int64_t append_wait(partition_t *p, uint64_t id, int count)
{
	buf_t b = { 0 };
	tu_batch(&b, id, count, 100, 1000);
	wait_t x = { .w = { .cb = on_done } };
	x.w.arg = &x;
	pthread_mutex_init(&x.mu, NULL);
	pthread_cond_init(&x.cond, NULL);
	partition_append_t res;
	assert_int_equal(partition_append(p, b.data, b.len, &x.w, &res), OK);
	assert_false(res.ack_now);
	pthread_mutex_lock(&x.mu);
	while (!x.done)
		pthread_cond_wait(&x.cond, &x.mu);
	pthread_mutex_unlock(&x.mu);
	assert_int_equal(x.status, OK);
	partition_info_t info;
	partition_info(p, &info);
	assert_true(info.hwm > res.last_offset);
	buf_free(&b);
	return res.base_offset;
}

static void test_topics_persist(void **state)
{
	(void)state;
	storage_t *st = open_st();
	topic_kv_t cfg[] = { { "retention.ms", "3600000" }, { "message.timestamp.type", "LogAppendTime" } };
	assert_int_equal(storage_topic_create(st, "clicks", 3, cfg, 2), OK);
	assert_int_equal(storage_topic_create(st, "clicks", 3, NULL, 0), ERR_EXISTS);
	assert_int_equal(storage_topic_create(st, "orders.v1", 1, NULL, 0), OK);
	topic_t *t = storage_topic_get(st, "clicks");
	assert_non_null(t);
	assert_int_equal(topic_partition_count(t), 3);
	for (int i = 0; i < 20; i++)
		assert_int_equal(append_wait(topic_partition(t, 1, NULL), (uint64_t)i * 5, 5), i * 5);
	partition_config_t pc;
	topic_config(t, &pc);
	assert_true(pc.log_append_time);
	assert_int_equal(pc.retention_ms, 3600000);
	topic_put(t);
	storage_close(st);

	st = open_st();
	t = storage_topic_get(st, "clicks");
	assert_non_null(t);
	assert_int_equal(topic_partition_count(t), 3);
	topic_config(t, &pc);
	assert_true(pc.log_append_time);
	partition_info_t info;
	partition_info(topic_partition(t, 1, NULL), &info);
	assert_int_equal(info.log_end, 100);
	assert_true(info.segments > 1);
	assert_null(topic_partition(t, 3, NULL));
	topic_put(t);
	assert_non_null((t = storage_topic_get(st, "orders.v1")));
	topic_put(t);
	storage_close(st);
}

static void test_invalid_requests(void **state)
{
	(void)state;
	storage_t *st = open_st();
	assert_int_equal(storage_topic_create(st, "", 1, NULL, 0), ERR_INVALID);
	assert_int_equal(storage_topic_create(st, "..", 1, NULL, 0), ERR_INVALID);
	assert_int_equal(storage_topic_create(st, "a/b", 1, NULL, 0), ERR_INVALID);
	assert_int_equal(storage_topic_create(st, "ok", 0, NULL, 0), ERR_INVALID);
	char longname[300];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_int_equal(storage_topic_create(st, longname, 1, NULL, 0), ERR_INVALID);
	topic_kv_t bad[] = { { "segment.bytes", "12" } };
	assert_int_equal(storage_topic_create(st, "ok", 1, bad, 1), ERR_INVALID);
	topic_kv_t unknown[] = { { "no.such.key", "1" } };
	assert_int_equal(storage_topic_create(st, "ok", 1, unknown, 1), ERR_INVALID);
	assert_null(storage_topic_get(st, "ok")); /* nothing half-created */
	assert_int_equal(storage_topic_delete(st, "ok"), ERR_NOT_FOUND);
	assert_int_equal(storage_topic_create(st, "ok", 2, NULL, 0), OK);
	assert_int_equal(storage_topic_add_partitions(st, "ok", 1), ERR_INVALID);
	assert_int_equal(storage_topic_config_set(st, "ok", "retention.ms", "soon"), ERR_INVALID);
	/* A second process (or open) on the same directory is refused. */
	storage_opts_t o;
	storage_opts_default(&o, tu_dir);
	storage_t *st2 = NULL;
	assert_int_equal(storage_open(&o, &st2), ERR_SYS(EBUSY));
	storage_close(st);
}

static void test_delete_and_grow(void **state)
{
	(void)state;
	storage_t *st = open_st();
	assert_int_equal(storage_topic_create(st, "gone", 2, NULL, 0), OK);
	topic_t *held = storage_topic_get(st, "gone");
	append_wait(topic_partition(held, 0, NULL), 0, 3);
	assert_int_equal(storage_topic_delete(st, "gone"), OK);
	assert_null(storage_topic_get(st, "gone"));
	/* A holder keeps a usable topic until it lets go. */
	partition_info_t info;
	partition_info(topic_partition(held, 0, NULL), &info);
	assert_int_equal(info.log_end, 3);
	topic_put(held);
	/* The name can be reused at once, starting empty. */
	assert_int_equal(storage_topic_create(st, "gone", 1, NULL, 0), OK);
	topic_t *t = storage_topic_get(st, "gone");
	partition_info(topic_partition(t, 0, NULL), &info);
	assert_int_equal(info.log_end, 0);
	topic_put(t);
	assert_int_equal(storage_topic_add_partitions(st, "gone", 4), OK);
	assert_int_equal(storage_topic_config_set(st, "gone", "retention.bytes", "1000"), OK);
	storage_close(st);
	st = open_st();
	t = storage_topic_get(st, "gone");
	assert_int_equal(topic_partition_count(t), 4);
	partition_config_t pc;
	topic_config(t, &pc);
	assert_int_equal(pc.retention_bytes, 1000);
	topic_put(t);
	storage_close(st);
	char trash[128];
	snprintf(trash, sizeof trash, "%s/trash", tu_dir);
	int entries = 0;
	DIR *d = opendir(trash);
	for (struct dirent *de; d && (de = readdir(d));)
		entries += de->d_name[0] != '.';
	if (d)
		closedir(d);
	assert_int_equal(entries, 0);
}

static void test_retention_runs_in_background(void **state)
{
	(void)state;
	storage_t *st = open_st();
	topic_kv_t cfg[] = { { "retention.bytes", "20000" }, { "segment.bytes", "4096" } };
	assert_int_equal(storage_topic_create(st, "r", 1, cfg, 2), OK);
	topic_t *t = storage_topic_get(st, "r");
	partition_t *p = topic_partition(t, 0, NULL);
	for (int i = 0; i < 100; i++)
		append_wait(p, (uint64_t)i * 3, 3);
	partition_info_t info;
	for (int i = 0; i < 100; i++) { /* bounded: up to 5 s */
		partition_info(p, &info);
		if (info.log_start > 0)
			break;
		usleep(50000);
	}
	assert_true(info.log_start > 0);
	assert_true(info.size_bytes < 40000);
	topic_put(t);
	storage_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_topics_persist, tu_dir_setup, tu_dir_teardown),
		cmocka_unit_test_setup_teardown(test_invalid_requests, tu_dir_setup, tu_dir_teardown),
		cmocka_unit_test_setup_teardown(test_delete_and_grow, tu_dir_setup, tu_dir_teardown),
		cmocka_unit_test_setup_teardown(test_retention_runs_in_background, tu_dir_setup, tu_dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
