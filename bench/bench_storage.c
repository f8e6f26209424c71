/*
 * bench_storage.c -- the storage engine alone: producers append batches of 1 KiB records to a topic with
 * the `always` flush policy (every acknowledged byte fsynced by group commit) and keep a window of
 * unacknowledged bytes in flight, as a Kafka producer with several requests in flight does.
 * Prints MB/s, records/s, ack latency percentiles and bytes per fsync.
 *
 * Usage: bench_storage --dir DIR [--seconds S] [--record-bytes B] [--batch-records N] [--inflight-kb K]
 *                      [--partitions P] [--producers T] [--flush POLICY] [--preallocate-kb K]
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "storage/recordbatch.h"
#include "storage/storage.h"

typedef struct producer producer_t;

typedef struct {
	partition_waiter_t w;
	producer_t *pr;
	int64_t start_ns;
	size_t bytes;
} inflight_t;

struct producer {
	pthread_t thread;
	topic_t *topic;
	int32_t partitions;
	int id;
	buf_t batch;
	int64_t deadline_ns;
	size_t window;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t in_flight;
	inflight_t *slots;
	int nslots, free_top;
	int *free_stack;
	int64_t *lat_ns;
	size_t nlat, caplat;
	int64_t acked_bytes, acked_records;
	int records_per_batch;
	err_t error;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_ack(partition_waiter_t *w, err_t status)
{
	inflight_t *s = (inflight_t *)w;
	producer_t *pr = s->pr;
	int64_t lat = now_ns() - s->start_ns;
	pthread_mutex_lock(&pr->mu);
	if (status != OK)
		pr->error = status;
	pr->in_flight -= s->bytes;
	pr->acked_bytes += (int64_t)s->bytes;
	pr->acked_records += pr->records_per_batch;
	if (pr->nlat < pr->caplat)
		pr->lat_ns[pr->nlat++] = lat;
	pr->free_stack[pr->free_top++] = (int)(s - pr->slots);
	pthread_cond_signal(&pr->cond);
	pthread_mutex_unlock(&pr->mu);
}

static void *produce(void *arg)
{
	producer_t *pr = arg;
	uint8_t *copy = malloc(pr->batch.len);
	int32_t next_part = pr->id % pr->partitions;
	while (now_ns() < pr->deadline_ns) {
		pthread_mutex_lock(&pr->mu);
		while ((pr->in_flight + pr->batch.len > pr->window || pr->free_top == 0) && pr->error == OK)
			pthread_cond_wait(&pr->cond, &pr->mu);
		if (pr->error != OK) {
			pthread_mutex_unlock(&pr->mu);
			break;
		}
		inflight_t *s = &pr->slots[pr->free_stack[--pr->free_top]];
		pr->in_flight += pr->batch.len;
		pthread_mutex_unlock(&pr->mu);
		memcpy(copy, pr->batch.data, pr->batch.len); /* append patches the batch in place */
		s->start_ns = now_ns();
		s->bytes = pr->batch.len;
		partition_t *p = topic_partition(pr->topic, next_part, NULL);
		next_part = (next_part + 1) % pr->partitions;
		partition_append_t res;
		err_t rc = partition_append(p, copy, pr->batch.len, &s->w, &res);
		if (rc == OK && res.ack_now)
			on_ack(&s->w, OK);
		else if (rc != OK) {
			fprintf(stderr, "append: %s\n", err_str(rc));
			on_ack(&s->w, rc);
		}
	}
	pthread_mutex_lock(&pr->mu);
	while (pr->in_flight > 0) /* drain: wait for the last acks */
		pthread_cond_wait(&pr->cond, &pr->mu);
	pthread_mutex_unlock(&pr->mu);
	free(copy);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },          { "seconds", required_argument, NULL, 's' },
		{ "record-bytes", required_argument, NULL, 'r' }, { "batch-records", required_argument, NULL, 'b' },
		{ "inflight-kb", required_argument, NULL, 'i' },  { "partitions", required_argument, NULL, 'p' },
		{ "producers", required_argument, NULL, 't' },    { "flush", required_argument, NULL, 'f' },
		{ "preallocate-kb", required_argument, NULL, 'a' }, { NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *flush = "always";
	double seconds = 10;
	int record_bytes = 1024, batch_records = 16, partitions = 1, producers = 1;
	long inflight_kb = 4096, prealloc_kb = -1;
	int c;
	while ((c = getopt_long(argc, argv, "d:s:r:b:i:p:t:f:a:", opts, NULL)) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 's': seconds = atof(optarg); break;
		case 'r': record_bytes = atoi(optarg); break;
		case 'b': batch_records = atoi(optarg); break;
		case 'i': inflight_kb = atol(optarg); break;
		case 'p': partitions = atoi(optarg); break;
		case 't': producers = atoi(optarg); break;
		case 'f': flush = optarg; break;
		case 'a': prealloc_kb = atol(optarg); break;
		default: return 2;
		}
	}
	if (dir == NULL || record_bytes < 1 || batch_records < 1 || partitions < 1 || producers < 1 ||
	    seconds <= 0) {
		fprintf(stderr, "usage: bench_storage --dir DIR [--seconds S] [--record-bytes B] [--batch-records N]\n"
				"       [--inflight-kb K] [--partitions P] [--producers T] [--flush POLICY]\n");
		return 2;
	}
	log_set_level(LOG_LEVEL_WARN);
	storage_opts_t o;
	storage_opts_default(&o, dir);
	if (storage_parse_flush_policy(flush, &o.defaults.flush_policy, &o.defaults.flush_interval_ms) != OK)
		return 2;
	if (prealloc_kb >= 0)
		o.defaults.preallocate_bytes = (int64_t)prealloc_kb * 1024;
	storage_t *st;
	if (storage_open(&o, &st) != OK)
		return 1;
	storage_topic_delete(st, "bench");
	if (storage_topic_create(st, "bench", partitions, NULL, 0) != OK)
		return 1;
	topic_t *t = storage_topic_get(st, "bench");

	/* One batch template: random-ish values so nothing compresses by accident. */
	rb_builder_t b;
	rb_builder_init(&b, -1, -1, -1);
	char *value = malloc((size_t)record_bytes);
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < record_bytes; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		value[i] = (char)('!' + x % 90);
	}
	for (int i = 0; i < batch_records; i++) {
		char key[16];
		snprintf(key, sizeof key, "k%d", i);
		rb_builder_add(&b, 1700000000000 + i, slice_cstr(key), slice_make(value, (size_t)record_bytes), NULL, 0);
	}
	rb_builder_finish(&b);
	free(value);

	producer_t *prs = calloc((size_t)producers, sizeof *prs);
	int64_t start = now_ns(), deadline = start + (int64_t)(seconds * 1e9);
	for (int i = 0; i < producers; i++) {
		producer_t *pr = &prs[i];
		pr->topic = t;
		pr->partitions = partitions;
		pr->id = i;
		pr->batch = b.buf;
		pr->deadline_ns = deadline;
		pr->window = (size_t)inflight_kb * 1024;
		pr->records_per_batch = batch_records;
		pr->nslots = (int)(pr->window / b.buf.len) + 2;
		pr->slots = calloc((size_t)pr->nslots, sizeof *pr->slots);
		pr->free_stack = calloc((size_t)pr->nslots, sizeof *pr->free_stack);
		for (int k = 0; k < pr->nslots; k++) {
			pr->slots[k].w.cb = on_ack;
			pr->slots[k].pr = pr;
			pr->free_stack[pr->free_top++] = k;
		}
		pr->caplat = 4 << 20;
		pr->lat_ns = malloc(pr->caplat * sizeof *pr->lat_ns);
		pthread_mutex_init(&pr->mu, NULL);
		pthread_cond_init(&pr->cond, NULL);
		pthread_create(&pr->thread, NULL, produce, pr);
	}
	int64_t bytes = 0, records = 0, flushes = 0;
	size_t nlat = 0;
	for (int i = 0; i < producers; i++) {
		pthread_join(prs[i].thread, NULL);
		bytes += prs[i].acked_bytes;
		records += prs[i].acked_records;
		nlat += prs[i].nlat;
		if (prs[i].error != OK) {
			fprintf(stderr, "producer %d failed: %s\n", i, err_str(prs[i].error));
			return 1;
		}
	}
	double secs = (double)(now_ns() - start) / 1e9;
	int64_t *lat = malloc((nlat + 1) * sizeof *lat);
	size_t k = 0;
	for (int i = 0; i < producers; i++) {
		memcpy(lat + k, prs[i].lat_ns, prs[i].nlat * sizeof *lat);
		k += prs[i].nlat;
	}
	qsort(lat, nlat, sizeof *lat, cmp_i64);
	for (int32_t i = 0; i < partitions; i++) {
		partition_info_t info;
		partition_info(topic_partition(t, i, NULL), &info);
		flushes += info.flushes;
	}
	printf("storage: flush=%s producers=%d partitions=%d batch=%d x %d B in-flight=%ld KiB\n", flush, producers,
	       partitions, batch_records, record_bytes, inflight_kb);
	printf("storage: %.1f MB/s  %.0f records/s  acks p50=%.3f ms p99=%.3f ms p999=%.3f ms  "
	       "%.0f KiB per fsync (%" PRId64 " fsyncs)\n",
	       (double)bytes / secs / 1e6, (double)records / secs, nlat ? (double)lat[nlat / 2] / 1e6 : 0,
	       nlat ? (double)lat[nlat * 99 / 100] / 1e6 : 0, nlat ? (double)lat[nlat * 999 / 1000] / 1e6 : 0,
	       flushes ? (double)bytes / 1024.0 / (double)flushes : 0, flushes);
	printf("RESULT_MBPS=%.1f\n", (double)bytes / secs / 1e6);
	topic_put(t);
	storage_topic_delete(st, "bench");
	storage_close(st);
	rb_builder_free(&b);
	return 0;
}
