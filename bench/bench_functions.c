/*
 * bench_functions.c -- the producer side of bench/functions.sh (librdkafka):
 *   fill  --brokers B --topic T --count N [--bytes 100]        N records as fast as possible (acks=1)
 *   paced --brokers B --topic T --rate R --seconds S [--bytes 100]
 *         R records/s for S seconds, each carrying {"t": send time in CLOCK_REALTIME ns} (acks=all, no linger)
 * Keys are "k0".."k99999" (with 1,000 keys the partitions of 4 differed by up to a quarter, and the fullest one
 * alone set the end of a throughput run). Prints "RESULT <mode> records=N seconds=S rate=R".
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(int clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op)
{
	(void)rk;
	(void)op;
	if (m->err) {
		fprintf(stderr, "bench_functions: delivery failed: %s\n", rd_kafka_err2str(m->err));
		exit(1);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "", *brokers = "127.0.0.1:9092", *topic = "bench";
	long long count = 1000000, bytes = 100;
	double rate = 1000, seconds = 10;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--brokers")) brokers = argv[i + 1];
		else if (!strcmp(argv[i], "--topic")) topic = argv[i + 1];
		else if (!strcmp(argv[i], "--count")) count = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--bytes")) bytes = atoll(argv[i + 1]);
		else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
		else { fprintf(stderr, "bench_functions: unknown option %s\n", argv[i]); return 2; }
	}
	bool paced = strcmp(mode, "paced") == 0;
	if (!paced && strcmp(mode, "fill") != 0) {
		fprintf(stderr, "usage: bench_functions fill|paced [--brokers B] [--topic T] [--count N] [--rate R] "
				"[--seconds S] [--bytes N]\n");
		return 2;
	}
	char err[512];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof err);
	rd_kafka_conf_set(c, "acks", paced ? "all" : "1", err, sizeof err);
	rd_kafka_conf_set(c, "linger.ms", paced ? "0" : "20", err, sizeof err);
	rd_kafka_conf_set(c, "batch.size", "1000000", err, sizeof err);
	rd_kafka_conf_set(c, "queue.buffering.max.kbytes", "262144", err, sizeof err);
	rd_kafka_conf_set(c, "partitioner", "murmur2_random", err, sizeof err);
	rd_kafka_conf_set_dr_msg_cb(c, on_dr);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
	if (rk == NULL) {
		fprintf(stderr, "bench_functions: %s\n", err);
		return 1;
	}
	char *val = malloc((size_t)bytes + 64);
	int64_t start = now_ns(CLOCK_MONOTONIC);
	long long n = 0;
	if (paced)
		count = (long long)(rate * seconds);
	for (; n < count; n++) {
		if (paced) { /* send n at start + n/rate */
			int64_t due = start + (int64_t)((double)n * 1e9 / rate);
			int64_t now;
			while ((now = now_ns(CLOCK_MONOTONIC)) < due) {
				rd_kafka_poll(rk, 0);
				if (due - now > 200000) {
					struct timespec ts = { 0, 100000 };
					nanosleep(&ts, NULL);
				}
			}
		}
		int len = snprintf(val, (size_t)bytes + 64, "{\"t\":%" PRId64 ",\"p\":\"", now_ns(CLOCK_REALTIME));
		while (len < bytes - 2)
			val[len++] = 'x';
		val[len++] = '"';
		val[len++] = '}';
		char key[16];
		int kl = snprintf(key, sizeof key, "k%lld", n % 100000); /* many keys: partitions even within 1% */
		/* content-type: the event's data is JSON (handlers get an object, not a string) */
		while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(val, (size_t)len),
					 RD_KAFKA_V_KEY(key, (size_t)kl), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					 RD_KAFKA_V_HEADER("content-type", "application/json", 16),
					 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 10);
		rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 60000);
	double secs = (double)(now_ns(CLOCK_MONOTONIC) - start) / 1e9;
	printf("RESULT %s records=%lld seconds=%.2f rate=%.0f\n", mode, n, secs, (double)n / secs);
	free(val);
	rd_kafka_destroy(rk);
	return 0;
}
