/*
 * produce_raw.c -- what the broker takes from a producer that costs almost nothing: each thread is one
 * connection sending Kafka Produce v7 requests with one ready-made RecordBatch (magic 2, CRC-32C, 1 KiB
 * records by default) per partition, pipelined up to --inflight requests, and reading every answer (each
 * partition's error code must be 0 and its offsets must advance). bench/kafka.sh runs it next to librdkafka
 * producers (bench_kafka --produce), whose per-message work is the limit there; this one shows the broker.
 * Timestamps and the CRC are set anew for every request; the record bytes are the same each time. The topic
 * is created first (CreateTopics) unless it exists.
 *
 * Usage: produce_raw --brokers HOST:PORT --topic T --partitions N [--acks 1|-1] [--seconds S]
 *                    [--record-bytes B] [--batch-records R] [--inflight K] [--threads K] [--rate-mbps M]
 * --rate-mbps paces the requests (all threads together) and makes the latencies mean something: the time
 * from sending a request to its answer, per request, p50/p99/p99.9.
 * Prints "RESULT mode=rawproduce produce_mbps=... records_per_s=... p50_ms=... p99_ms=... p999_ms=...
 * errors=..."; MB is 10^6 bytes (record values only, as bench_kafka counts).
 * Ownership: each thread owns its socket, buffers and latency samples; main sums them after join.
 */
#include <pthread.h>

#include "core/crc32c.h"
#include "rawkafka.h"

#define MAX_PARTS 256
#define MAX_INFLIGHT 64

static struct {
	const char *brokers, *topic;
	int partitions, threads, inflight, record_bytes, batch_records, acks;
	double seconds, rate_mbps;
} opt = { .threads = 1, .inflight = 4, .record_bytes = 1024, .batch_records = 256, .acks = -1, .seconds = 10 };

typedef struct {
	int first, step;
	uint64_t records, requests, errors;
	int64_t last_base[MAX_PARTS];
	double *lat; /* seconds, one per answered request */
	size_t nlat, caplat;
} worker_t;

static uint8_t *varint(uint8_t *p, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	while (z >= 0x80) {
		*p++ = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	*p++ = (uint8_t)z;
	return p;
}

/* One RecordBatch of R records without keys; returns its size. The timestamps and CRC are set by stamp(). */
static size_t build_batch(uint8_t *b)
{
	uint8_t *p = b + 61;
	for (int i = 0; i < opt.batch_records; i++) {
		uint8_t body[32], *q = body;
		*q++ = 0;               /* attributes */
		q = varint(q, 0);       /* timestamp delta */
		q = varint(q, i);       /* offset delta */
		q = varint(q, -1);      /* no key */
		q = varint(q, opt.record_bytes);
		size_t len = (size_t)(q - body) + (size_t)opt.record_bytes + 1;
		p = varint(p, (int64_t)len);
		memcpy(p, body, (size_t)(q - body));
		p += q - body;
		memset(p, 'a' + i % 26, (size_t)opt.record_bytes);
		p += opt.record_bytes;
		*p++ = 0;               /* no headers */
	}
	size_t n = (size_t)(p - b);
	memset(b, 0, 61);
	wr32(b + 8, (uint32_t)(n - 12));
	b[16] = 2;
	wr32(b + 23, (uint32_t)(opt.batch_records - 1));
	wr64(b + 43, UINT64_MAX); /* producer id -1 */
	wr16(b + 51, UINT16_MAX); /* epoch -1 */
	wr32(b + 53, UINT32_MAX); /* sequence -1 */
	wr32(b + 57, (uint32_t)opt.batch_records);
	return n;
}

static void stamp(uint8_t *b, size_t n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	wr64(b + 27, ms);
	wr64(b + 35, ms);
	wr32(b + 17, crc32c(0, b + 21, n - 21));
}

/* CreateTopics v2 for the topic with the given partition count; "already exists" (36) is fine. */
static bool create_topic(int fd)
{
	uint8_t req[512], *p = req + 4, ans[1024];
	size_t tl = strlen(opt.topic);
	if (tl > 200)
		return false;
	p = wr16(p, 19);
	p = wr16(p, 2);
	p = wr32(p, 0);
	p = wrstr(p, "produce_raw");
	p = wr32(p, 1);
	p = wrstr(p, opt.topic);
	p = wr32(p, (uint32_t)opt.partitions);
	p = wr16(p, 1);
	p = wr32(p, 0); /* assignments */
	p = wr32(p, 0); /* configs */
	p = wr32(p, 10000);
	*p++ = 0;       /* validate only */
	wr32(req, (uint32_t)(p - req - 4));
	uint8_t hdr[8];
	if (!rk_io_full(fd, req, (size_t)(p - req), true) || !rk_io_full(fd, hdr, 8, false))
		return false;
	size_t len = rd32(hdr) - 4;
	if (len > sizeof ans || len < 12 + tl || !rk_io_full(fd, ans, len, false))
		return false;
	int16_t err = (int16_t)rd16(ans + 8 + 2 + tl);
	if (err != 0 && err != 36)
		fprintf(stderr, "produce_raw: creating %s: error %d\n", opt.topic, err);
	return err == 0 || err == 36;
}

/* Produce v7: header v1, transactional id null, acks, timeout, one topic, this worker's partitions. */
static size_t build_request(worker_t *w, uint8_t *req, int32_t corr, uint8_t *batch, size_t blen)
{
	uint8_t *p = req + 4;
	p = wr16(p, 0);
	p = wr16(p, 7);
	p = wr32(p, (uint32_t)corr);
	p = wrstr(p, "produce_raw");
	p = wr16(p, UINT16_MAX);
	p = wr16(p, (uint16_t)opt.acks);
	p = wr32(p, 30000);
	p = wr32(p, 1);
	p = wrstr(p, opt.topic);
	uint8_t *count = p;
	p += 4;
	uint32_t n = 0;
	stamp(batch, blen);
	for (int i = w->first; i < opt.partitions; i += w->step, n++) {
		p = wr32(p, (uint32_t)i);
		p = wr32(p, (uint32_t)blen);
		memcpy(p, batch, blen);
		p += blen;
	}
	wr32(count, n);
	wr32(req, (uint32_t)(p - req - 4));
	return (size_t)(p - req);
}

/* Reads one answer: every partition must be error 0 with a base offset past the previous one. */
static bool read_answer(worker_t *w, int fd, int32_t corr, uint8_t *buf, size_t cap)
{
	uint8_t hdr[8];
	if (!rk_io_full(fd, hdr, 8, false) || rd32(hdr + 4) != (uint32_t)corr)
		return false;
	size_t len = rd32(hdr) - 4;
	if (len > cap || !rk_io_full(fd, buf, len, false))
		return false;
	const uint8_t *p = buf, *e = buf + len;
	uint32_t nt = rd32(p);
	p += 4;
	for (uint32_t t = 0; t < nt && p + 2 <= e; t++) {
		p += 2 + rd16(p);
		uint32_t np = rd32(p);
		p += 4;
		for (uint32_t k = 0; k < np && p + 30 <= e; k++, p += 30) {
			int part = (int)rd32(p);
			int16_t err = (int16_t)rd16(p + 4);
			int64_t base = (int64_t)rd64(p + 6);
			if (err != 0 || part < 0 || part >= opt.partitions || base < w->last_base[part]) {
				if (w->errors++ == 0)
					fprintf(stderr, "produce_raw: partition %d: error %d, base offset %lld\n", part, err,
						(long long)base);
				continue;
			}
			w->last_base[part] = base + 1;
			w->records += (uint64_t)opt.batch_records;
		}
	}
	return true;
}

static void *worker_main(void *arg)
{
	worker_t *w = arg;
	int fd = rk_dial(opt.brokers, 0);
	size_t cap = (size_t)(opt.record_bytes + 16) * (size_t)opt.batch_records + 64;
	uint8_t *batch = malloc(cap), *req = malloc(cap * (size_t)opt.partitions + 4096), *ans = malloc(1 << 20);
	if (fd < 0 || batch == NULL || req == NULL || ans == NULL) {
		fprintf(stderr, "produce_raw: cannot connect to %s\n", opt.brokers);
		w->errors++;
		return NULL;
	}
	if (w->first == 0 && !create_topic(fd)) {
		w->errors++;
		close(fd);
		return NULL;
	}
	size_t blen = build_batch(batch);
	int mine = 0;
	for (int i = w->first; i < opt.partitions; i += w->step)
		mine++;
	/* Pacing: this worker's share of the rate, one request (mine batches) at a time. */
	double gap = opt.rate_mbps > 0 ? (double)mine * opt.batch_records * opt.record_bytes /
						 (opt.rate_mbps * 1e6 / opt.threads) : 0;
	double sent_at[MAX_INFLIGHT], t0 = now_s(), deadline = t0 + opt.seconds, next = t0;
	int32_t corr = 0, done = 0;
	bool ok = true;
	while (ok && (now_s() < deadline || done < corr)) {
		bool can_send = corr - done < opt.inflight && now_s() < deadline && (gap == 0 || now_s() >= next);
		if (can_send) {
			size_t rl = build_request(w, req, corr, batch, blen);
			sent_at[corr % MAX_INFLIGHT] = now_s();
			ok = rk_io_full(fd, req, rl, true);
			corr++;
			next += gap;
			continue;
		}
		if (done < corr) {
			ok = read_answer(w, fd, done, ans, 1 << 20);
			if (ok && w->nlat < w->caplat)
				w->lat[w->nlat++] = now_s() - sent_at[done % MAX_INFLIGHT];
			done++;
			w->requests++;
		} else if (gap > 0) {
			double wait = next - now_s();
			if (wait > 0)
				nanosleep(&(struct timespec){ (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) }, NULL);
		}
	}
	if (!ok)
		w->errors++;
	free(batch);
	free(req);
	free(ans);
	close(fd);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	const rk_opt_t opts[] = {
		{ "--brokers", 's', &opt.brokers },	       { "--topic", 's', &opt.topic },
		{ "--partitions", 'i', &opt.partitions },     { "--threads", 'i', &opt.threads },
		{ "--acks", 'i', &opt.acks },		       { "--seconds", 'd', &opt.seconds },
		{ "--record-bytes", 'i', &opt.record_bytes }, { "--batch-records", 'i', &opt.batch_records },
		{ "--inflight", 'i', &opt.inflight },	       { "--rate-mbps", 'd', &opt.rate_mbps },
	};
	if (!rk_parse(argc, argv, opts, sizeof opts / sizeof *opts, "produce_raw") || opt.brokers == NULL ||
	    opt.topic == NULL || strlen(opt.topic) > 200 || opt.partitions < 1 || opt.partitions > MAX_PARTS ||
	    opt.threads < 1 || opt.threads > opt.partitions || opt.inflight < 1 || opt.inflight > MAX_INFLIGHT ||
	    opt.record_bytes < 1 || opt.record_bytes > (1 << 20) || opt.batch_records < 1 ||
	    (size_t)opt.batch_records * (size_t)opt.record_bytes > (64u << 20) || (opt.acks != 1 && opt.acks != -1)) {
		fprintf(stderr, "usage: produce_raw --brokers HOST:PORT --topic T --partitions N [--acks 1|-1] "
				"[--seconds S] [--record-bytes B] [--batch-records R] [--inflight K] [--threads K] "
				"[--rate-mbps M]\n");
		return 2;
	}
	worker_t *ws = calloc((size_t)opt.threads, sizeof *ws);
	pthread_t *th = calloc((size_t)opt.threads, sizeof *th);
	if (ws == NULL || th == NULL)
		return 1;
	double t0 = now_s();
	for (int i = 0; i < opt.threads; i++) {
		ws[i].first = i;
		ws[i].step = opt.threads;
		ws[i].caplat = 1 << 22;
		ws[i].lat = malloc(ws[i].caplat * sizeof(double));
		if (ws[i].lat == NULL)
			return 1;
		pthread_create(&th[i], NULL, worker_main, &ws[i]);
	}
	uint64_t records = 0, requests = 0, errors = 0;
	size_t nlat = 0;
	for (int i = 0; i < opt.threads; i++) {
		pthread_join(th[i], NULL);
		records += ws[i].records;
		requests += ws[i].requests;
		errors += ws[i].errors;
		nlat += ws[i].nlat;
	}
	double secs = now_s() - t0;
	double *all = malloc((nlat + 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < opt.threads && all != NULL; i++)
		for (size_t j = 0; j < ws[i].nlat; j++)
			all[k++] = ws[i].lat[j];
	if (all != NULL)
		qsort(all, k, sizeof *all, cmp_double);
#define PCT(q) (k ? all[(size_t)((double)(k - 1) * (q))] * 1e3 : 0.0)
	double mb = (double)records * opt.record_bytes / 1e6;
	printf("produce_raw: %d threads, acks=%d, %d partitions, %llu requests of %d x %d B per partition, %d in "
	       "flight: %.1f MB/s, %.0f records/s; request latency p50 %.3f p99 %.3f p99.9 %.3f ms\n",
	       opt.threads, opt.acks, opt.partitions, (unsigned long long)requests, opt.batch_records,
	       opt.record_bytes, opt.inflight, mb / secs, records / secs, PCT(0.5), PCT(0.99), PCT(0.999));
	printf("RESULT mode=rawproduce produce_mbps=%.1f records_per_s=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f "
	       "requests=%llu errors=%llu\n",
	       mb / secs, records / secs, PCT(0.5), PCT(0.99), PCT(0.999), (unsigned long long)requests,
	       (unsigned long long)errors);
	for (int i = 0; i < opt.threads; i++)
		free(ws[i].lat);
	free(all);
	free(ws);
	free(th);
	return errors == 0 && requests > 0 ? 0 : 1;
}
