/*
 * fetch_raw.c -- how fast the broker serves a topic to readers that do not decode records: each thread
 * is one connection sending Kafka Fetch v4 requests for all partitions (its share with --threads), the way a
 * replica follower or a mirroring tool reads, and checking every RecordBatch it gets (magic 2, a CRC-32C
 * over its bytes, offsets continuing where the previous batch ended), without turning records into messages.
 * bench/kafka.sh runs it next to librdkafka consumers (bench_kafka --consume), which decode every record and
 * are the limit there; this one shows the broker side.
 *
 * Usage: fetch_raw --brokers HOST:PORT --topic T --partitions N [--threads K] [--seconds S]
 *                  [--partition-max-bytes B]
 * Reads every partition from offset 0 to the high watermark seen in the first answer (or until --seconds).
 * Prints "RESULT mode=raw raw_mbps=... batches=... records=... bad=... complete=0|1"; MB is 10^6 bytes.
 * Ownership: each thread owns its socket and buffer; results are summed after join.
 */
#include <pthread.h>

#include "core/crc32c.h"
#include "rawkafka.h"

#define MAX_PARTS 256

static struct {
	const char *brokers, *topic;
	int partitions, threads, part_max;
	double seconds;
} opt = { .partitions = 0, .threads = 1, .seconds = 30, .part_max = 8 << 20 };

typedef struct {
	int first, step; /* partitions first, first+step, ... */
	int64_t next[MAX_PARTS], end[MAX_PARTS];
	uint64_t bytes, batches, records, bad;
	bool complete;
} reader_t;

/* Fetch v4: header v1 (key, version, correlation id, client id), then replica -1, max wait, min bytes, max
 * bytes, isolation, one topic with this reader's partitions that still have something to read. */
static size_t build_fetch(reader_t *r, uint8_t *buf, int32_t corr)
{
	uint8_t *p = buf + 4;
	p = wr16(p, 1);
	p = wr16(p, 4);
	p = wr32(p, (uint32_t)corr);
	p = wrstr(p, "fetch_raw");
	p = wr32(p, (uint32_t)-1);
	p = wr32(p, 100);
	p = wr32(p, 1);
	p = wr32(p, 64u << 20);
	*p++ = 0;
	p = wr32(p, 1);
	p = wrstr(p, opt.topic);
	uint8_t *count = p;
	p += 4;
	uint32_t n = 0;
	for (int i = r->first; i < opt.partitions; i += r->step) {
		if (r->end[i] >= 0 && r->next[i] >= r->end[i])
			continue;
		p = wr32(p, (uint32_t)i);
		p = wr64(p, (uint64_t)r->next[i]);
		p = wr32(p, (uint32_t)opt.part_max);
		n++;
	}
	wr32(count, n);
	wr32(buf, (uint32_t)(p - buf - 4));
	return n == 0 ? 0 : (size_t)(p - buf);
}

/* Walks one partition's record set: whole batches only (the broker may cut the last one short). */
static void check_records(reader_t *r, int part, const uint8_t *p, size_t len)
{
	while (len >= 61) {
		int64_t base = (int64_t)rd64(p);
		uint32_t blen = rd32(p + 8);
		if ((size_t)blen + 12 > len)
			break;
		uint32_t crc = rd32(p + 17);
		if (p[16] != 2 || base != r->next[part] || crc32c(0, p + 21, blen - 9) != crc) {
			r->bad++;
			r->next[part] = r->end[part]; /* stop reading this partition */
			return;
		}
		int32_t last_delta = (int32_t)rd32(p + 23);
		r->records += rd32(p + 57);
		r->batches++;
		r->bytes += blen + 12;
		r->next[part] = base + last_delta + 1;
		p += blen + 12;
		len -= blen + 12;
	}
}

static void *reader_main(void *arg)
{
	reader_t *r = arg;
	int fd = rk_dial(opt.brokers, 8 << 20);
	if (fd < 0) {
		fprintf(stderr, "fetch_raw: cannot connect to %s\n", opt.brokers);
		r->bad++;
		return NULL;
	}
	size_t cap = (size_t)opt.part_max * (size_t)opt.partitions + (1 << 20);
	uint8_t *buf = malloc(cap), req[8192];
	double deadline = now_s() + opt.seconds;
	for (int32_t corr = 1; buf != NULL && now_s() < deadline; corr++) {
		size_t rl = build_fetch(r, req, corr);
		if (rl == 0) {
			r->complete = true;
			break;
		}
		uint8_t hdr[8];
		if (!rk_io_full(fd, req, rl, true) || !rk_io_full(fd, hdr, 8, false) || rd32(hdr + 4) != (uint32_t)corr)
			break;
		size_t len = rd32(hdr) - 4;
		if (len > cap || !rk_io_full(fd, buf, len, false))
			break;
		/* throttle, [topic [partition error hw lso aborted(-1) records]] */
		const uint8_t *p = buf + 4, *e = buf + len;
		uint32_t nt = rd32(p);
		p += 4;
		for (uint32_t t = 0; t < nt && p + 2 <= e; t++) {
			p += 2 + rd16(p);
			uint32_t np = rd32(p);
			p += 4;
			for (uint32_t k = 0; k < np && p + 34 <= e; k++) {
				int part = (int)rd32(p);
				int16_t err = (int16_t)rd16(p + 4);
				int64_t hw = (int64_t)rd64(p + 6);
				int32_t na = (int32_t)rd32(p + 22);
				p += 26 + (na > 0 ? (size_t)na * 16 : 0);
				uint32_t rs = rd32(p);
				p += 4;
				if (rs == UINT32_MAX)
					rs = 0;
				if (part < 0 || part >= opt.partitions || err != 0 || rs > (size_t)(e - p)) {
					r->bad++;
					goto out;
				}
				if (r->end[part] < 0)
					r->end[part] = hw;
				check_records(r, part, p, rs);
				p += rs;
			}
		}
	}
out:
	free(buf);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	const rk_opt_t opts[] = {
		{ "--brokers", 's', &opt.brokers },	 { "--topic", 's', &opt.topic },
		{ "--partitions", 'i', &opt.partitions }, { "--threads", 'i', &opt.threads },
		{ "--seconds", 'd', &opt.seconds },	 { "--partition-max-bytes", 'i', &opt.part_max },
	};
	if (!rk_parse(argc, argv, opts, sizeof opts / sizeof *opts, "fetch_raw") || opt.brokers == NULL ||
	    opt.topic == NULL || strlen(opt.topic) > 200 || opt.partitions < 1 || opt.partitions > MAX_PARTS ||
	    opt.threads < 1 || opt.threads > opt.partitions || opt.part_max < 1024) {
		fprintf(stderr, "usage: fetch_raw --brokers HOST:PORT --topic T --partitions N [--threads K] "
				"[--seconds S] [--partition-max-bytes B]\n");
		return 2;
	}
	reader_t *rs = calloc((size_t)opt.threads, sizeof *rs);
	pthread_t *th = calloc((size_t)opt.threads, sizeof *th);
	if (rs == NULL || th == NULL)
		return 1;
	double t0 = now_s();
	for (int i = 0; i < opt.threads; i++) {
		rs[i].first = i;
		rs[i].step = opt.threads;
		for (int k = 0; k < MAX_PARTS; k++)
			rs[i].end[k] = -1;
		pthread_create(&th[i], NULL, reader_main, &rs[i]);
	}
	uint64_t bytes = 0, batches = 0, records = 0, bad = 0;
	bool complete = true;
	for (int i = 0; i < opt.threads; i++) {
		pthread_join(th[i], NULL);
		bytes += rs[i].bytes;
		batches += rs[i].batches;
		records += rs[i].records;
		bad += rs[i].bad;
		complete = complete && rs[i].complete;
	}
	double secs = now_s() - t0;
	printf("fetch_raw: %d threads read %.1f MB (%llu batches, %llu records) in %.2f s\n", opt.threads,
	       bytes / 1e6, (unsigned long long)batches, (unsigned long long)records, secs);
	printf("RESULT mode=raw raw_mbps=%.1f batches=%llu records=%llu bad=%llu complete=%d\n", bytes / 1e6 / secs,
	       (unsigned long long)batches, (unsigned long long)records, (unsigned long long)bad, complete ? 1 : 0);
	free(rs);
	free(th);
	return bad == 0 && complete ? 0 : 1;
}
