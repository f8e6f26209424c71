/* Kafka-protocol benchmark for factlog (or any Kafka broker), built on librdkafka.
 *
 *   --produce     N producer threads (--producers), each with its own rd_kafka_t, send --record-bytes records
 *                 to --topic for --seconds; reports delivered MB/s, records/s and the enqueue-to-delivery-report
 *                 latency percentiles. --rate-mbps paces the offered load (split evenly over the producers).
 *   --consume     C consumer threads (--consumers), each assigned every partition from the beginning (no group,
 *                 no commits), read until --expect records (default: the sum of the partitions' watermarks) or
 *                 --seconds; reports MB/s per consumer and in total, and checks offsets have no gaps.
 *   --concurrent  both at once on the same topic: consumers follow the producers until they have read
 *                 everything that was delivered.
 *   --group-prefix P  (with --consume or --concurrent) consumer i subscribes with its own group.id "P-i" instead
 *                 of assigning partitions itself: every consumer is a separate consumer group, so the broker's group
 *                 coordinator (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetCommit, OffsetFetch) is in
 *                 the path. Offsets are auto-committed every second and once more at the end, then read back
 *                 (OffsetFetch) and checked against what the group read. Reports the time to the first assignment
 *                 per group and the per-group MB/s, smallest and largest.
 *   --records N   produce N records in total (split over the producers), --seconds is then only a limit.
 * MB is 10^6 bytes (as fio reports it). Machine-readable lines start with "RESULT ".
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- options ------------------------------------------------------------------------------------------- */

static struct {
	const char *brokers;
	const char *topic;
	bool produce, consume, concurrent;
	int producers, consumers, partitions;
	size_t record_bytes;
	const char *acks;
	double seconds;
	double rate_mbps; /* 0: as fast as possible */
	int linger_ms;
	int queue_kb;
	int64_t expect; /* consume: records each consumer must read; <0: from watermarks */
	int64_t records; /* produce: records in total; <0: until --seconds */
	const char *group_prefix; /* consume: one consumer group per consumer thread; NULL: assign, no group */
	int consumer_queue_kb; /* consume: queued.max.messages.kbytes per consumer; 0: from --consumers */
	bool create;
} opt = {
	.brokers = "127.0.0.1:9092",
	.topic = "bench",
	.producers = 1,
	.consumers = 1,
	.partitions = 4,
	.record_bytes = 1024,
	.acks = "all",
	.seconds = 10,
	.linger_ms = 5,
	.queue_kb = 65536,
	.expect = -1,
	.records = -1,
	.create = true,
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: bench_kafka --produce|--consume|--concurrent [options]\n"
		"  --brokers H:P        bootstrap servers (default 127.0.0.1:9092)\n"
		"  --topic T            topic (default bench)\n"
		"  --partitions P       partitions when creating the topic (default 4)\n"
		"  --no-create          do not create the topic with the admin API (rely on auto-create)\n"
		"  --producers N        producer threads (default 1)\n"
		"  --consumers C        consumer threads (default 1)\n"
		"  --record-bytes B     record value size (default 1024)\n"
		"  --acks all|1|0       producer acks (default all)\n"
		"  --seconds S          produce duration / consume time limit (default 10)\n"
		"  --rate-mbps R        pace the producers to R MB/s in total (default: unpaced)\n"
		"  --linger-ms MS       producer linger.ms (default 5)\n"
		"  --queue-kb KB        producer queue.buffering.max.kbytes (default 65536)\n"
		"  --expect N           consume: records each consumer reads (default: all in the topic)\n"
		"  --records N          produce: N records in total, then stop (default: for --seconds)\n"
		"  --group-prefix P     consume: consumer i joins its own consumer group P-i (subscribe, commits)\n"
		"  --consumer-queue-kb K  consume: queued.max.messages.kbytes per consumer (default 262144, less\n"
		"                       with more than 2 consumers: 524288 / consumers, at least 16384)\n");
}

static const char *need_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "%s needs a value\n", argv[*i]);
		exit(2);
	}
	return argv[++*i];
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--produce"))
			opt.produce = true;
		else if (!strcmp(a, "--consume"))
			opt.consume = true;
		else if (!strcmp(a, "--concurrent"))
			opt.concurrent = true;
		else if (!strcmp(a, "--no-create"))
			opt.create = false;
		else if (!strcmp(a, "--brokers"))
			opt.brokers = need_arg(argc, argv, &i);
		else if (!strcmp(a, "--topic"))
			opt.topic = need_arg(argc, argv, &i);
		else if (!strcmp(a, "--partitions"))
			opt.partitions = atoi(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--producers"))
			opt.producers = atoi(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--consumers"))
			opt.consumers = atoi(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--record-bytes"))
			opt.record_bytes = (size_t)strtoull(need_arg(argc, argv, &i), NULL, 10);
		else if (!strcmp(a, "--acks"))
			opt.acks = need_arg(argc, argv, &i);
		else if (!strcmp(a, "--seconds"))
			opt.seconds = atof(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--rate-mbps"))
			opt.rate_mbps = atof(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--linger-ms"))
			opt.linger_ms = atoi(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--queue-kb"))
			opt.queue_kb = atoi(need_arg(argc, argv, &i));
		else if (!strcmp(a, "--expect"))
			opt.expect = strtoll(need_arg(argc, argv, &i), NULL, 10);
		else if (!strcmp(a, "--records"))
			opt.records = strtoll(need_arg(argc, argv, &i), NULL, 10);
		else if (!strcmp(a, "--group-prefix"))
			opt.group_prefix = need_arg(argc, argv, &i);
		else if (!strcmp(a, "--consumer-queue-kb"))
			opt.consumer_queue_kb = atoi(need_arg(argc, argv, &i));
		else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "unknown argument: %s\n", a);
			usage(stderr);
			exit(2);
		}
	}
	if (opt.concurrent)
		opt.produce = opt.consume = true;
	if (!opt.produce && !opt.consume) {
		usage(stderr);
		exit(2);
	}
	if (opt.producers < 1 || opt.consumers < 1 || opt.partitions < 1 || opt.record_bytes < 1 ||
	    opt.seconds <= 0 || opt.rate_mbps < 0 || opt.records == 0 || opt.consumer_queue_kb < 0 ||
	    (opt.group_prefix && !*opt.group_prefix)) {
		fprintf(stderr, "invalid option value\n");
		exit(2);
	}
	if (!strcmp(opt.acks, "all"))
		opt.acks = "-1";
	if (strcmp(opt.acks, "-1") && strcmp(opt.acks, "1") && strcmp(opt.acks, "0")) {
		fprintf(stderr, "--acks must be all, 1 or 0\n");
		exit(2);
	}
	if (opt.consumer_queue_kb == 0) {
		opt.consumer_queue_kb = 262144;
		if (opt.consumers > 2)
			opt.consumer_queue_kb = 524288 / opt.consumers > 16384 ? 524288 / opt.consumers : 16384;
	}
}

/* ---- helpers ------------------------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u) };
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void set_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[512];
	if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "config %s=%s: %s\n", k, v, err);
		exit(1);
	}
}

static void set_conf_int(rd_kafka_conf_t *conf, const char *k, long long v)
{
	char s[32];
	snprintf(s, sizeof s, "%lld", v);
	set_conf(conf, k, s);
}

static atomic_int client_errors; /* error_cb calls, all clients */

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)opaque;
	atomic_fetch_add(&client_errors, 1);
	fprintf(stderr, "rdkafka error (%s): %s: %s\n", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
		reason);
}

static rd_kafka_conf_t *base_conf(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	set_conf(conf, "bootstrap.servers", opt.brokers);
	set_conf(conf, "client.id", "bench_kafka");
	rd_kafka_conf_set_error_cb(conf, error_cb);
	return conf;
}

/* Log-linear histogram of nanoseconds: exact below 128, then 64 sub-buckets per power of two (~1.6%). */
#define HBUCKETS (128 + 57 * 64)
typedef struct {
	uint64_t n[HBUCKETS];
	uint64_t count, max;
} hist_t;

static unsigned hist_index(uint64_t v)
{
	if (v < 128)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - 6u;
	return 128u + (shift - 1u) * 64u + (unsigned)((v >> shift) - 64u);
}

static uint64_t hist_value(unsigned idx) /* middle of the bucket */
{
	if (idx < 128)
		return idx;
	unsigned k = idx - 128u, shift = k / 64u + 1u;
	uint64_t lower = (uint64_t)(k % 64u + 64u) << shift;
	return lower + ((uint64_t)1 << shift) / 2u;
}

static void hist_add(hist_t *h, uint64_t v)
{
	h->n[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

static void hist_merge(hist_t *into, const hist_t *from)
{
	for (unsigned i = 0; i < HBUCKETS; i++)
		into->n[i] += from->n[i];
	into->count += from->count;
	if (from->max > into->max)
		into->max = from->max;
}

static double hist_pct_ms(const hist_t *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
	if (want < 1)
		want = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HBUCKETS; i++) {
		seen += h->n[i];
		if (seen >= want) {
			uint64_t v = hist_value(i);
			return (double)(v < h->max ? v : h->max) / 1e6;
		}
	}
	return (double)h->max / 1e6;
}

/* ---- topic setup --------------------------------------------------------------------------------------- */

static void create_topic(void)
{
	char err[512];
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(), err, sizeof err);
	if (!rk) {
		fprintf(stderr, "rd_kafka_new: %s\n", err);
		exit(1);
	}
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(opt.topic, opt.partitions, 1, err, sizeof err);
	if (!nt) {
		fprintf(stderr, "NewTopic: %s\n", err);
		exit(1);
	}
	rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	rd_kafka_AdminOptions_set_operation_timeout(ao, 10000, err, sizeof err);
	rd_kafka_AdminOptions_set_request_timeout(ao, 10000, err, sizeof err);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
	if (!ev) {
		fprintf(stderr, "CreateTopics %s: no result in 15 s; relying on auto-create\n", opt.topic);
	} else if (rd_kafka_event_error(ev)) {
		fprintf(stderr, "CreateTopics %s: %s; relying on auto-create\n", opt.topic, rd_kafka_event_error_string(ev));
	} else {
		size_t n = 0;
		const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
		for (size_t i = 0; i < n; i++) {
			rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
			if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
				printf("topic %s already exists\n", opt.topic);
			else if (e)
				fprintf(stderr, "CreateTopics %s: %s: %s\n", rd_kafka_topic_result_name(res[i]), rd_kafka_err2name(e),
					rd_kafka_topic_result_error_string(res[i]) ? rd_kafka_topic_result_error_string(res[i]) : "");
			else
				printf("created topic %s with %d partitions\n", opt.topic, opt.partitions);
		}
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_AdminOptions_destroy(ao);
	rd_kafka_NewTopic_destroy(nt);
	rd_kafka_destroy(rk);
}

/* ---- produce ------------------------------------------------------------------------------------------- */

typedef struct {
	int id;
	pthread_t th;
	hist_t lat;
	uint64_t ok, failed, enqueued;
	uint64_t done_ns; /* when the last delivery report arrived (after the flush) */
	rd_kafka_resp_err_t first_err;
	char first_err_str[256];
} producer_t;

static char *payload;
static uint64_t start_ns;
static pthread_barrier_t setup_barrier, start_barrier;
static atomic_bool produce_done;
static atomic_uint_least64_t produced_total; /* delivered records, set when every producer is done */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	producer_t *p = opaque;
	if (m->err) {
		if (p->failed++ == 0) {
			p->first_err = m->err;
			snprintf(p->first_err_str, sizeof p->first_err_str, "%s", rd_kafka_err2str(m->err));
		}
		return;
	}
	p->ok++;
	hist_add(&p->lat, now_ns() - (uint64_t)(uintptr_t)m->_private);
}

static void *producer_main(void *arg)
{
	producer_t *p = arg;
	char err[512];
	rd_kafka_conf_t *conf = base_conf();
	char name[32];
	snprintf(name, sizeof name, "producer-%d", p->id);
	set_conf(conf, "client.id", name);
	set_conf(conf, "acks", opt.acks);
	set_conf_int(conf, "linger.ms", opt.linger_ms);
	set_conf_int(conf, "batch.size", 1048576);
	set_conf_int(conf, "batch.num.messages", 1000000);
	set_conf_int(conf, "queue.buffering.max.kbytes", opt.queue_kb);
	set_conf_int(conf, "queue.buffering.max.messages", 10000000);
	set_conf(conf, "compression.type", "none");
	set_conf_int(conf, "max.in.flight.requests.per.connection", 5);
	set_conf_int(conf, "message.max.bytes", 2000000);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_opaque(conf, p);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "rd_kafka_new: %s\n", err);
		exit(1);
	}
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, opt.topic, NULL);

	/* Connect and learn the partitions before the clock starts. */
	const struct rd_kafka_metadata *md = NULL;
	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	else
		fprintf(stderr, "%s: metadata request failed\n", name);

	pthread_barrier_wait(&setup_barrier);
	pthread_barrier_wait(&start_barrier);
	uint64_t t0 = start_ns, end = t0 + (uint64_t)(opt.seconds * 1e9);
	double ns_per_record = 0;
	if (opt.rate_mbps > 0)
		ns_per_record = (double)opt.record_bytes * 1e3 * opt.producers / opt.rate_mbps;
	uint64_t n = 0, quota = UINT64_MAX;
	if (opt.records > 0)
		quota = (uint64_t)(opt.records / opt.producers + (p->id < opt.records % opt.producers ? 1 : 0));
	for (;;) {
		uint64_t t = now_ns();
		if (t >= end || n >= quota)
			break;
		if (ns_per_record > 0) {
			uint64_t due = t0 + (uint64_t)((double)n * ns_per_record);
			if (due > t + 20000) {
				rd_kafka_poll(rk, 0);
				sleep_until(due < end ? due : end);
				continue;
			}
		}
		if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, 0, payload, opt.record_bytes, NULL, 0, (void *)(uintptr_t)t) == -1) {
			rd_kafka_resp_err_t e = rd_kafka_last_error();
			if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				rd_kafka_poll(rk, 1);
				continue;
			}
			fprintf(stderr, "%s: produce: %s\n", name, rd_kafka_err2str(e));
			break;
		}
		n++;
		if ((n & 127) == 0)
			rd_kafka_poll(rk, 0);
	}
	p->enqueued = n;
	rd_kafka_resp_err_t fe = rd_kafka_flush(rk, 60000);
	p->done_ns = now_ns();
	if (fe)
		fprintf(stderr, "%s: flush: %s, %d messages still queued\n", name, rd_kafka_err2str(fe), rd_kafka_outq_len(rk));
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return NULL;
}

/* ---- consume ------------------------------------------------------------------------------------------- */

typedef struct {
	int id;
	pthread_t th;
	uint64_t records, bytes, gaps, bad, errors;
	uint64_t t_start, t_end;
	int64_t expect;
	bool complete;
	/* --group-prefix: */
	uint64_t t_assigned;             /* first partitions assigned by the group (0: never) */
	int rebalances;                  /* assignments received */
	uint64_t commits_ok, commits_failed;
	rd_kafka_resp_err_t commit_err;  /* the first failed commit's error */
	int64_t committed;               /* sum over the partitions of the committed offsets read back; -1: failed */
} consumer_t;

/* Group mode: take what the coordinator assigns (eager or cooperative protocol), note when it first came. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	consumer_t *c = opaque;
	bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		if (c->t_assigned == 0)
			c->t_assigned = now_ns();
		c->rebalances++;
		if (coop)
			rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
		else
			rd_kafka_assign(rk, parts);
	} else {
		if (coop)
			rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
		else
			rd_kafka_assign(rk, NULL);
	}
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
	void *opaque)
{
	(void)rk;
	(void)offsets;
	consumer_t *c = opaque;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		c->commits_ok++;
	else if (err != RD_KAFKA_RESP_ERR__NO_OFFSET) { /* nothing new to commit is not a failure */
		if (c->commits_failed++ == 0) {
			c->commit_err = err;
			fprintf(stderr, "consumer-%d: offset commit: %s\n", c->id, rd_kafka_err2str(err));
		}
	}
}

static int topic_partitions(rd_kafka_t *rk)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, opt.topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	int n = -1;
	for (int tries = 0; tries < 50 && n < 1; tries++) {
		if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
				n = md->topics[0].partition_cnt;
			rd_kafka_metadata_destroy(md);
		}
		if (n < 1)
			sleep_until(now_ns() + 100000000u);
	}
	rd_kafka_topic_destroy(rkt);
	return n;
}

static void *consumer_main(void *arg)
{
	consumer_t *c = arg;
	char err[512], name[32];
	snprintf(name, sizeof name, "consumer-%d", c->id);
	rd_kafka_conf_t *conf = base_conf();
	set_conf(conf, "client.id", name);
	if (opt.group_prefix) {
		/* A group of its own: subscribe, the coordinator assigns every partition; commits every second. */
		char group[256];
		snprintf(group, sizeof group, "%s-%d", opt.group_prefix, c->id);
		set_conf(conf, "group.id", group);
		set_conf(conf, "enable.auto.commit", "true");
		set_conf(conf, "auto.commit.interval.ms", "1000");
		set_conf(conf, "enable.auto.offset.store", "true");
		rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
		rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
		rd_kafka_conf_set_opaque(conf, c);
	} else {
		/* librdkafka's rd_kafka_assign() needs a group.id, but nothing is joined or committed with it. */
		set_conf(conf, "group.id", "bench_kafka");
		set_conf(conf, "enable.auto.commit", "false");
		set_conf(conf, "enable.auto.offset.store", "false");
	}
	set_conf(conf, "auto.offset.reset", "earliest");
	long long qbytes = (long long)opt.consumer_queue_kb * 1024;
	set_conf_int(conf, "fetch.max.bytes", qbytes < (16 << 20) ? qbytes : (16 << 20)); /* under the mmap threshold */
	set_conf_int(conf, "max.partition.fetch.bytes", qbytes / 4 < (4 << 20) ? qbytes / 4 : (4 << 20));
	set_conf_int(conf, "queued.max.messages.kbytes", opt.consumer_queue_kb);
	set_conf_int(conf, "fetch.wait.max.ms", 100);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
	if (!rk) {
		fprintf(stderr, "rd_kafka_new: %s\n", err);
		exit(1);
	}
	int np = topic_partitions(rk);
	if (np < 1) {
		fprintf(stderr, "%s: topic %s not found\n", name, opt.topic);
		exit(1);
	}
	int64_t expect = opt.expect;
	if (expect < 0 && !opt.concurrent) {
		expect = 0;
		for (int i = 0; i < np; i++) {
			int64_t lo = 0, hi = 0;
			rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, opt.topic, i, &lo, &hi, 10000);
			if (e) {
				fprintf(stderr, "%s: watermarks of partition %d: %s\n", name, i, rd_kafka_err2str(e));
				exit(1);
			}
			expect += hi - lo;
		}
	}
	c->expect = expect;
	int64_t *next = calloc((size_t)np, sizeof *next); /* next expected offset per partition; 0: none yet */
	rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(np);
	for (int i = 0; i < np; i++)
		rd_kafka_topic_partition_list_add(tp, opt.topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);

	pthread_barrier_wait(&setup_barrier);
	pthread_barrier_wait(&start_barrier);
	c->t_start = now_ns();
	uint64_t deadline = start_ns + (uint64_t)(opt.seconds * 1e9);
	if (opt.concurrent)
		deadline += 60000000000u; /* grace to catch up after the producers stop */
	if (opt.group_prefix) {
		rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(sub, opt.topic, RD_KAFKA_PARTITION_UA);
		rd_kafka_resp_err_t se = rd_kafka_subscribe(rk, sub);
		rd_kafka_topic_partition_list_destroy(sub);
		if (se) {
			fprintf(stderr, "%s: subscribe: %s\n", name, rd_kafka_err2str(se));
			exit(1);
		}
	} else {
		rd_kafka_resp_err_t ae = rd_kafka_assign(rk, tp);
		if (ae) {
			fprintf(stderr, "%s: assign: %s\n", name, rd_kafka_err2str(ae));
			exit(1);
		}
	}

	enum { BATCH = 4096 };
	rd_kafka_message_t **msgs = malloc(BATCH * sizeof *msgs);
	uint64_t last_progress = now_ns();
	for (;;) {
		if (opt.concurrent && expect < 0 && atomic_load(&produce_done))
			c->expect = expect = (int64_t)atomic_load(&produced_total);
		if (expect >= 0 && c->records >= (uint64_t)expect) {
			c->complete = true;
			break;
		}
		uint64_t t = now_ns();
		if (t >= deadline)
			break;
		ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, BATCH);
		if (n < 0) {
			fprintf(stderr, "%s: consume: %s\n", name, rd_kafka_err2str(rd_kafka_last_error()));
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			rd_kafka_message_t *m = msgs[i];
			if (m->err) {
				if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && c->errors++ < 5)
					fprintf(stderr, "%s: message error: %s\n", name, rd_kafka_message_errstr(m));
			} else {
				c->records++;
				c->bytes += m->len;
				if (m->len != opt.record_bytes ||
				    (m->len >= 8 && memcmp(m->payload, payload, 8) != 0)) {
					if (c->bad++ < 5)
						fprintf(stderr, "%s: partition %d offset %" PRId64 ": unexpected value (%zu bytes)\n", name,
							m->partition, m->offset, m->len);
				}
				if (m->partition >= 0 && m->partition < np) {
					int64_t *nx = &next[m->partition];
					if (*nx != 0 && m->offset != *nx && c->gaps++ < 5)
						fprintf(stderr, "%s: partition %d: offset %" PRId64 " after %" PRId64 "\n", name,
							m->partition, m->offset, *nx - 1);
					*nx = m->offset + 1;
				}
			}
			rd_kafka_message_destroy(m);
		}
		if (n > 0)
			last_progress = now_ns();
		else if (now_ns() - last_progress > 5000000000u && !opt.concurrent) {
			fprintf(stderr, "%s: no records for 5 s at %" PRIu64 "/%" PRId64 "\n", name, c->records, expect);
			last_progress = now_ns();
		}
	}
	c->t_end = now_ns();
	c->committed = -1;
	if (opt.group_prefix) {
		/* Commit what was read (OffsetCommit), then read it back from the coordinator (OffsetFetch). */
		rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
		if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET) {
			fprintf(stderr, "%s: final commit: %s\n", name, rd_kafka_err2str(ce));
			c->commits_failed++;
		}
		rd_kafka_resp_err_t fe = rd_kafka_committed(rk, tp, 10000);
		if (fe)
			fprintf(stderr, "%s: committed offsets: %s\n", name, rd_kafka_err2str(fe));
		else {
			c->committed = 0;
			for (int i = 0; i < tp->cnt; i++) {
				if (tp->elems[i].err)
					fprintf(stderr, "%s: committed offset of partition %d: %s\n", name, tp->elems[i].partition,
						rd_kafka_err2str(tp->elems[i].err));
				if (tp->elems[i].offset > 0) /* minus log start offsets: assumed 0 (a fresh topic) */
					c->committed += tp->elems[i].offset;
			}
		}
	}
	rd_kafka_topic_partition_list_destroy(tp);
	free(msgs);
	free(next);
	rd_kafka_queue_destroy(q);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return NULL;
}

/* ---- main ---------------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	/* librdkafka allocates a fresh buffer for every fetch response (tens of MB). With glibc's defaults these
	 * are mmapped per thread arena and unmapped when freed, so every response page-faults anew and the
	 * consumer spends most of its time in the kernel (half the throughput on a 2-core VM). Keep them in one
	 * heap that is never trimmed: this measures the broker, not the client's allocator. */
	mallopt(M_ARENA_MAX, 1);
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	payload = malloc(opt.record_bytes);
	for (size_t i = 0; i < opt.record_bytes; i++)
		payload[i] = (char)('a' + i % 26);

	if (opt.produce && opt.create)
		create_topic();

	int np = opt.produce ? opt.producers : 0, nc = opt.consume ? opt.consumers : 0;
	producer_t *prods = calloc((size_t)(np ? np : 1), sizeof *prods);
	consumer_t *cons = calloc((size_t)(nc ? nc : 1), sizeof *cons);
	pthread_barrier_init(&setup_barrier, NULL, (unsigned)(np + nc + 1));
	pthread_barrier_init(&start_barrier, NULL, (unsigned)(np + nc + 1));
	for (int i = 0; i < np; i++) {
		prods[i].id = i;
		pthread_create(&prods[i].th, NULL, producer_main, &prods[i]);
	}
	for (int i = 0; i < nc; i++) {
		cons[i].id = i;
		pthread_create(&cons[i].th, NULL, consumer_main, &cons[i]);
	}
	pthread_barrier_wait(&setup_barrier); /* every client is connected */
	start_ns = now_ns();                   /* written before the start barrier releases anyone */
	pthread_barrier_wait(&start_barrier);

	char line[2048];
	size_t ln = 0;
	line[0] = 0;
	if (np) {
		hist_t *all = calloc(1, sizeof *all);
		uint64_t ok = 0, failed = 0, enq = 0, done = start_ns;
		for (int i = 0; i < np; i++) {
			pthread_join(prods[i].th, NULL);
			hist_merge(all, &prods[i].lat);
			ok += prods[i].ok;
			failed += prods[i].failed;
			enq += prods[i].enqueued;
			if (prods[i].done_ns > done)
				done = prods[i].done_ns;
			if (prods[i].failed)
				fprintf(stderr, "producer-%d: %" PRIu64 " deliveries failed, first: %s (%s)\n", i, prods[i].failed,
					rd_kafka_err2name(prods[i].first_err), prods[i].first_err_str);
		}
		atomic_store(&produced_total, ok);
		atomic_store(&produce_done, true);
		double secs = (double)(done - start_ns) / 1e9;
		double mbps = (double)ok * (double)opt.record_bytes / 1e6 / secs;
		double rps = (double)ok / secs;
		double p50 = hist_pct_ms(all, 0.50), p99 = hist_pct_ms(all, 0.99), p999 = hist_pct_ms(all, 0.999);
		printf("produce: %d producer(s), acks=%s, %zu B records, %s%.0f MB/s offered: %" PRIu64 " delivered, %" PRIu64
		       " failed, %" PRIu64 " enqueued in %.2f s: %.1f MB/s, %.0f records/s; latency p50 %.3f ms, p99 %.3f ms, "
		       "p99.9 %.3f ms, max %.3f ms\n",
			np, opt.acks, opt.record_bytes, opt.rate_mbps > 0 ? "" : "unpaced ~", opt.rate_mbps, ok, failed, enq, secs,
			mbps, rps, p50, p99, p999, (double)all->max / 1e6);
		ln += (size_t)snprintf(line + ln, sizeof line - ln,
			" produce_mbps=%.1f records_per_s=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f delivered=%" PRIu64
			" failed=%" PRIu64,
			mbps, rps, p50, p99, p999, (double)all->max / 1e6, ok, failed);
		free(all);
	}
	if (nc) {
		double total_mbps = 0, worst = -1, best = -1, join_max_ms = 0, join_min_ms = -1;
		uint64_t records = 0, bytes = 0, gaps = 0, bad = 0, errors = 0, last_end = start_ns;
		uint64_t commits_ok = 0, commits_failed = 0, unassigned = 0, committed_wrong = 0;
		int rebalances = 0;
		bool complete = true;
		for (int i = 0; i < nc; i++) {
			consumer_t *c = &cons[i];
			pthread_join(c->th, NULL);
			double secs = (double)(c->t_end - start_ns) / 1e9;
			double mbps = (double)c->bytes / 1e6 / secs;
			char grp[160] = "";
			if (opt.group_prefix) {
				double join_ms = c->t_assigned ? (double)(c->t_assigned - start_ns) / 1e6 : -1;
				snprintf(grp, sizeof grp,
					" [group %s-%d: assigned after %.0f ms, %d assignment(s), %" PRIu64 " commits, %" PRIu64
					" failed, committed %" PRId64 "]",
					opt.group_prefix, i, join_ms, c->rebalances, c->commits_ok, c->commits_failed, c->committed);
				if (!c->t_assigned)
					unassigned++;
				else {
					if (join_ms > join_max_ms)
						join_max_ms = join_ms;
					if (join_min_ms < 0 || join_ms < join_min_ms)
						join_min_ms = join_ms;
				}
				commits_ok += c->commits_ok;
				commits_failed += c->commits_failed;
				rebalances += c->rebalances;
				/* The offsets read back must cover what was read (exactly, when the topic was read whole). */
				if (c->committed < 0 || (c->complete && opt.expect < 0 && c->committed != c->expect))
					committed_wrong++;
			}
			printf("consume: consumer-%d read %" PRIu64 "/%" PRId64 " records in %.2f s: %.1f MB/s, %.0f records/s%s%s\n", i,
				c->records, c->expect, secs, mbps, (double)c->records / secs, c->complete ? "" : " (INCOMPLETE)", grp);
			total_mbps += mbps;
			if (worst < 0 || mbps < worst)
				worst = mbps;
			if (mbps > best)
				best = mbps;
			records += c->records;
			bytes += c->bytes;
			if (c->t_end > last_end)
				last_end = c->t_end;
			gaps += c->gaps;
			bad += c->bad;
			errors += c->errors;
			complete = complete && c->complete;
		}
		double wall_mbps = (double)bytes / 1e6 / ((double)(last_end - start_ns) / 1e9);
		printf("consume: %d consumer(s): %.1f MB/s in total (%.1f MB/s: all bytes over the wall time), slowest %.1f MB/s, "
		       "fastest %.1f MB/s, %s\n",
			nc, total_mbps, wall_mbps, worst, best, complete ? "all complete" : "SOME INCOMPLETE");
		ln += (size_t)snprintf(line + ln, sizeof line - ln,
			" consume_mbps=%.1f consume_mbps_wall=%.1f consume_mbps_each_min=%.1f consume_mbps_each_max=%.1f consumed=%" PRIu64
			" expected_each=%" PRId64 " complete=%d gaps=%" PRIu64 " bad=%" PRIu64 " msg_errors=%" PRIu64,
			total_mbps, wall_mbps, worst, best, records, cons[0].expect, complete ? 1 : 0, gaps, bad, errors);
		if (opt.group_prefix) {
			printf("groups: %d, first assignment after %.0f..%.0f ms, %d assignments, %" PRIu64 " commits, %" PRIu64
			       " failed, %" PRIu64 " never assigned, %" PRIu64 " with wrong committed offsets\n",
				nc, join_min_ms < 0 ? 0 : join_min_ms, join_max_ms, rebalances, commits_ok, commits_failed, unassigned,
				committed_wrong);
			ln += (size_t)snprintf(line + ln, sizeof line - ln,
				" groups=%d join_ms_min=%.0f join_ms_max=%.0f assignments=%d commits=%" PRIu64 " commits_failed=%" PRIu64
				" unassigned=%" PRIu64 " committed_wrong=%" PRIu64,
				nc, join_min_ms < 0 ? 0 : join_min_ms, join_max_ms, rebalances, commits_ok, commits_failed, unassigned,
				committed_wrong);
		}
	}
	printf("RESULT mode=%s%s client_errors=%d\n", opt.concurrent ? "concurrent" : opt.produce ? "produce" : "consume", line,
		atomic_load(&client_errors));
	pthread_barrier_destroy(&setup_barrier);
	pthread_barrier_destroy(&start_barrier);
	free(prods);
	free(cons);
	free(payload);
	return 0;
}
