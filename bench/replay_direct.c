/*
 * replay_direct.c -- how fast a replay could go on this machine if it read the archive's segment files
 * itself instead of consuming through a Kafka client. bench/replay.sh prints it next to the replay.
 *
 *   replay_direct --dir ARCHIVE/TOPIC-CREATEDMS --topic NAME --handler PATH [--batch 10000]
 *
 * One thread per partition directory (as the replay runs every partition at once, one batch at a time per
 * partition) reads each archived .log file in offset order, walks its batches with the storage's own
 * reader (codec_walk_records: CRC-32C checked, decompressed if need be), writes each record as the
 * runtime's exact CloudEvent text (ce_record_to_text, headers and all) into requests of --batch events,
 * and sends them to its own handler process (bench/handler.h). Left out: scheduling, commits, filters,
 * retries, introspection; and the records still in local segments (bench/replay.sh prints how many it
 * read next to the replay's count). Prints
 * "RESULT direct events=N seconds=S rate=R cpu_us_per_event=C" (C: this process and its handlers).
 */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "handler.h"
#include "event/cloudevents.h"
#include "storage/codec.h"

#define MAX_PARTS 64
#define MAX_HEADERS 64

static const char *dir = NULL, *topic = NULL;
static char *handler = NULL;
static int batch = 10000;

typedef struct {
	int32_t partition;
	handler_t h;
	buf_t req;
	int n;            /* events in req */
	uint64_t next_id;
	long long events;
	const char *err;
} part_t;

static void request_start(part_t *p)
{
	char head[128];
	int hl = snprintf(head, sizeof head, "{\"id\":\"rp-1000-%" PRIu64 "\",\"function\":\"rp\",\"attempt\":1,\"events\":[",
			  p->next_id++);
	p->req.len = 0;
	buf_append(&p->req, head, (size_t)hl);
	p->n = 0;
}

static void request_send(part_t *p)
{
	buf_append(&p->req, "]}\n", 3);
	handler_call(&p->h, &p->req);
	request_start(p);
}

static int on_record(void *arg, const rb_header_t *h, const rb_record_t *rec, int64_t offset, int64_t timestamp)
{
	part_t *p = arg;
	if (h->attributes & RB_ATTR_CONTROL) /* transaction markers: a Kafka consumer never sees them */
		return 0;
	ce_kv_t hdrs[MAX_HEADERS];
	int nh = 0;
	reader_t hr = reader_make(rec->headers.ptr, rec->headers.len);
	for (int32_t i = 0; i < rec->headers_count && nh < MAX_HEADERS; i++, nh++)
		rb_record_header_next(&hr, &hdrs[nh].key, &hdrs[nh].value, &hdrs[nh].value_null);
	if (hr.err != OK) {
		p->err = "a record's headers do not parse";
		return 1;
	}
	ce_kafka_record_t r = { .topic = topic, .partition = p->partition, .offset = offset, .timestamp = timestamp,
				.key = rec->key, .value = rec->value, .key_null = rec->key_null,
				.value_null = rec->value_null, .headers = hdrs, .nheaders = nh };
	if (p->n > 0)
		buf_append(&p->req, ",", 1);
	ce_record_to_text(&r, true, &p->req);
	p->events++;
	if (++p->n == batch)
		request_send(p);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void *partition_main(void *arg)
{
	part_t *p = arg;
	char path[4096];
	snprintf(path, sizeof path, "%s/%d", dir, (int)p->partition);
	DIR *d = opendir(path);
	if (d == NULL) {
		p->err = "cannot list the partition's directory";
		return NULL;
	}
	char **logs = NULL;
	size_t n = 0, cap = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 4, ".log") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			logs = realloc(logs, cap * sizeof *logs);
		}
		logs[n++] = strdup(e->d_name); /* zero-padded base offsets: name order is offset order */
	}
	closedir(d);
	qsort(logs, n, sizeof *logs, cmp_names);
	handler_start(&p->h, handler);
	request_start(p);
	buf_t file = { 0 }, scratch = { 0 };
	for (size_t i = 0; i < n && p->err == NULL; i++) {
		char fp[8192];
		snprintf(fp, sizeof fp, "%s/%s", path, logs[i]);
		FILE *f = fopen(fp, "rb");
		struct stat st;
		if (f == NULL || fstat(fileno(f), &st) != 0) {
			p->err = "cannot open a segment";
			if (f != NULL)
				fclose(f);
			break;
		}
		file.len = 0;
		buf_reserve(&file, (size_t)st.st_size);
		file.len = fread(file.data, 1, (size_t)st.st_size, f);
		fclose(f);
		if (codec_walk_records(file.data, file.len, &scratch, on_record, p) != OK && p->err == NULL)
			p->err = "a segment does not walk (CRC or format)";
	}
	if (p->n > 0 && p->err == NULL)
		request_send(p);
	handler_stop(&p->h);
	buf_free(&file);
	buf_free(&scratch);
	buf_free(&p->req);
	for (size_t i = 0; i < n; i++)
		free(logs[i]);
	free(logs);
	return NULL;
}

int main(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
		else if (!strcmp(argv[i], "--topic")) topic = argv[i + 1];
		else if (!strcmp(argv[i], "--handler")) handler = argv[i + 1];
		else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
		else { fprintf(stderr, "replay_direct: unknown option %s\n", argv[i]); return 2; }
	}
	if (dir == NULL || topic == NULL || handler == NULL || batch <= 0) {
		fprintf(stderr, "usage: replay_direct --dir ARCHIVE/TOPIC-CREATEDMS --topic NAME --handler PATH [--batch B]\n");
		return 2;
	}
	static part_t parts[MAX_PARTS];
	int np = 0;
	DIR *d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "replay_direct: cannot list %s\n", dir);
		return 1;
	}
	for (struct dirent *e; (e = readdir(d)) != NULL && np < MAX_PARTS;)
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
			parts[np++].partition = atoi(e->d_name);
	closedir(d);
	pthread_t t[MAX_PARTS];
	struct timespec t0, t1;
	double cpu0 = bench_cpu_seconds(RUSAGE_SELF);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < np; i++)
		if (pthread_create(&t[i], NULL, partition_main, &parts[i]) != 0) {
			fprintf(stderr, "replay_direct: cannot start a thread\n");
			return 1;
		}
	long long events = 0;
	int rc = 0;
	for (int i = 0; i < np; i++) {
		pthread_join(t[i], NULL);
		events += parts[i].events;
		if (parts[i].err != NULL) {
			fprintf(stderr, "replay_direct: partition %d: %s\n", (int)parts[i].partition, parts[i].err);
			rc = 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	double cpu = bench_cpu_seconds(RUSAGE_SELF) - cpu0 + bench_cpu_seconds(RUSAGE_CHILDREN);
	if (events == 0) {
		fprintf(stderr, "replay_direct: no events under %s\n", dir);
		return 1;
	}
	printf("RESULT direct events=%lld seconds=%.3f rate=%.0f cpu_us_per_event=%.3f\n", events, secs,
	       (double)events / secs, cpu * 1e6 / (double)events);
	return rc;
}
