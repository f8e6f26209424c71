/*
 * fn_ceiling.c -- the machine's own limit for invoking a no-op handler over the functions protocol: no Kafka,
 * no scheduler, no log. bench/replay.sh prints it next to the replay it measures.
 *
 *   fn_ceiling --handler PATH [--events N] [--workers W] [--batch B] [--bytes 100]
 *
 * W threads (the replay's workers) each start their own handler process (bench/handler.h, as the runtime
 * does) and send it N/W events in requests of B, one at a time, each answered before the next. A request
 * is the runtime's exact text: the CloudEvents are written by the runtime's own encoder (ce_record_to_text)
 * from records like bench_functions fill's (key "kN", a JSON value of --bytes bytes with a content-type
 * header). What is left out is everything a real runtime does besides: reading
 * the records, scheduling and committing. So no runtime that speaks this protocol can beat the events/s
 * printed here on the same machine.
 * Prints "RESULT ceiling events=N seconds=S rate=R request_bytes_per_event=X cpu_us_per_event=C"
 * (C: this process and its handlers).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handler.h"
#include "event/cloudevents.h"

static char *handler = NULL;
static long long per_worker = 0;
static int batch = 10000, value_bytes = 100;
static long long total_request_bytes = 0;
static pthread_mutex_t total_mu = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ns(int clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *worker(void *arg)
{
	int index = (int)(intptr_t)arg;
	handler_t h;
	handler_start(&h, handler);
	char value[4096], key[16];
	int vlen = snprintf(value, sizeof value, "{\"t\":%" PRId64 ",\"p\":\"", now_ns(CLOCK_REALTIME));
	while (vlen < value_bytes - 2 && vlen < (int)sizeof value - 2)
		value[vlen++] = 'x';
	value[vlen++] = '"';
	value[vlen++] = '}';
	ce_kv_t hdr = { .key = slice_cstr("content-type"), .value = slice_cstr("application/json") };
	int64_t ts = now_ns(CLOCK_REALTIME) / 1000000;
	buf_t req = { 0 };
	long long sent = 0, bytes = 0;
	for (uint64_t id = 0; sent < per_worker; id++) {
		req.len = 0;
		char head[128];
		int hl = snprintf(head, sizeof head, "{\"id\":\"rp-1000-%" PRIu64 "\",\"function\":\"rp\",\"attempt\":1,\"events\":[",
				  id * 64 + (uint64_t)index);
		buf_append(&req, head, (size_t)hl);
		for (int i = 0; i < batch && sent < per_worker; i++, sent++) {
			int kl = snprintf(key, sizeof key, "k%lld", (sent * 64 + index) % 100000);
			ce_kafka_record_t r = { .topic = "hist", .partition = index, .offset = sent, .timestamp = ts,
						.key = slice_make(key, (size_t)kl), .value = slice_make(value, (size_t)vlen),
						.headers = &hdr, .nheaders = 1 };
			if (i > 0)
				buf_append(&req, ",", 1);
			ce_record_to_text(&r, true, &req);
		}
		buf_append(&req, "]}\n", 3);
		bytes += (long long)req.len;
		handler_call(&h, &req);
	}
	handler_stop(&h);
	buf_free(&req);
	pthread_mutex_lock(&total_mu);
	total_request_bytes += bytes;
	pthread_mutex_unlock(&total_mu);
	return NULL;
}

int main(int argc, char **argv)
{
	long long events = 2000000;
	int workers = 4;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--handler")) handler = argv[i + 1];
		else if (!strcmp(argv[i], "--events")) events = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--bytes")) value_bytes = atoi(argv[i + 1]);
		else { fprintf(stderr, "fn_ceiling: unknown option %s\n", argv[i]); return 2; }
	}
	if (handler == NULL || events < workers || workers <= 0 || workers > 64 || batch <= 0 || value_bytes < 16 ||
	    value_bytes > 4000) {
		fprintf(stderr, "usage: fn_ceiling --handler PATH [--events N >= workers] [--workers 1-64] [--batch B] "
				"[--bytes 16-4000]\n");
		return 2;
	}
	per_worker = events / workers;
	events = per_worker * workers;
	pthread_t t[64];
	double cpu0 = bench_cpu_seconds(RUSAGE_SELF);
	int64_t start = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < workers; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
			fprintf(stderr, "fn_ceiling: cannot start a thread\n");
			return 1;
		}
	for (int i = 0; i < workers; i++)
		pthread_join(t[i], NULL);
	double secs = (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e9;
	double cpu = bench_cpu_seconds(RUSAGE_SELF) - cpu0 + bench_cpu_seconds(RUSAGE_CHILDREN);
	printf("RESULT ceiling events=%lld seconds=%.3f rate=%.0f request_bytes_per_event=%.1f cpu_us_per_event=%.3f\n",
	       events, secs, (double)events / secs, (double)total_request_bytes / (double)events, cpu * 1e6 / (double)events);
	return 0;
}
