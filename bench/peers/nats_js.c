/* NATS JetStream publish throughput, for bench/compare: creates a file-store stream, then publishes
 * fixed-size messages asynchronously (at most MAX_PENDING un-acked) for SECONDS, waits for every PubAck
 * and prints one line:
 *   RESULT msgs=N acked=N errors=N seconds=S msg_per_s=R mbps=M p50_ms=A p99_ms=B p999_ms=C max_ms=D
 * MB/s counts payload bytes only (1 MB = 10^6 bytes). Latency is publish call to PubAck callback, matched by
 * the PubAck's stream sequence (the stream is new and has one publisher, so sequence k is the k-th publish).
 * Usage: nats_js URL SECONDS [MSG_BYTES (1024)] [MAX_PENDING (256)] */
#include <nats/nats.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile int64_t acked, errors;

/* Send times by sequence (ring larger than any MAX_PENDING), latencies of the acked ones. */
#define RING (1 << 20)
static int64_t *sent_ns;
static float *lat_ms;
static int64_t lat_n, lat_cap;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double now_s(void)
{
	return (double)now_ns() / 1e9;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static double pct(double q)
{
	if (lat_n == 0)
		return 0;
	int64_t i = (int64_t)(q * (double)lat_n + 0.999999) - 1;
	if (i < 0)
		i = 0;
	if (i >= lat_n)
		i = lat_n - 1;
	return lat_ms[i];
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)closure;
	if (pa != NULL && pae == NULL) {
		__atomic_add_fetch(&acked, 1, __ATOMIC_RELAXED);
		int64_t t = __atomic_load_n(&sent_ns[pa->Sequence % RING], __ATOMIC_ACQUIRE);
		if (t > 0 && lat_n < lat_cap)
			lat_ms[lat_n++] = (float)((double)(now_ns() - t) / 1e6);
	} else
		__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
	natsMsg_Destroy(msg);
}

static int fail(const char *what, natsStatus s)
{
	fprintf(stderr, "nats_js: %s: %s\n", what, natsStatus_GetText(s));
	nats_PrintLastErrorStack(stderr);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s URL SECONDS [MSG_BYTES] [MAX_PENDING]\n", argv[0]);
		return 2;
	}
	const char *url = argv[1];
	double secs = atof(argv[2]);
	int bytes = argc > 3 ? atoi(argv[3]) : 1024;
	int pending = argc > 4 ? atoi(argv[4]) : 256;
	if (secs <= 0 || bytes <= 0 || pending <= 0) {
		fprintf(stderr, "nats_js: SECONDS, MSG_BYTES and MAX_PENDING must be positive\n");
		return 2;
	}

	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = natsConnection_ConnectTo(&nc, url);
	if (s != NATS_OK)
		return fail("connect", s);

	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = pending;
	jo.PublishAsync.AckHandler = on_ack;
	s = natsConnection_JetStream(&js, nc, &jo);
	if (s != NATS_OK)
		return fail("jetstream context", s);

	const char *subjects[] = {"bench.js"};
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	sc.Name = "BENCH";
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	s = js_AddStream(&si, js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		fprintf(stderr, "nats_js: add stream: jetstream error %d\n", (int)jerr);
		return fail("add stream", s);
	}
	jsStreamInfo_Destroy(si);

	char *payload = malloc((size_t)bytes);
	lat_cap = 1 << 24;
	sent_ns = calloc(RING, sizeof *sent_ns);
	lat_ms = malloc((size_t)lat_cap * sizeof *lat_ms);
	if (payload == NULL || sent_ns == NULL || lat_ms == NULL || pending >= RING)
		return 1;
	memset(payload, 'x', (size_t)bytes);

	int64_t sent = 0;
	double t0 = now_s(), end = t0 + secs;
	while (1) {
		/* Check the clock every 256 messages. */
		if ((sent & 255) == 0 && now_s() >= end)
			break;
		/* Blocks (StallWait) while MAX_PENDING publishes are un-acked. Stamped before the call, which may
		 * stall: the latency counts the wait for a free slot, as a Kafka client's queue time does. */
		__atomic_store_n(&sent_ns[(sent + 1) % RING], now_ns(), __ATOMIC_RELEASE);
		s = js_PublishAsync(js, "bench.js", payload, bytes, NULL);
		if (s == NATS_TIMEOUT)
			continue; /* stalled for StallWait: retry */
		if (s != NATS_OK)
			return fail("publish", s);
		sent++;
	}
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = 30000;
	s = js_PublishAsyncComplete(js, &po);
	double el = now_s() - t0;
	if (s != NATS_OK)
		fprintf(stderr, "nats_js: waiting for acks: %s\n", natsStatus_GetText(s));

	int64_t a = __atomic_load_n(&acked, __ATOMIC_RELAXED), e = __atomic_load_n(&errors, __ATOMIC_RELAXED);
	qsort(lat_ms, (size_t)lat_n, sizeof *lat_ms, cmp_float);
	printf("RESULT msgs=%lld acked=%lld errors=%lld seconds=%.2f msg_per_s=%.0f mbps=%.1f p50_ms=%.3f p99_ms=%.3f "
	       "p999_ms=%.3f max_ms=%.3f\n",
	       (long long)sent, (long long)a, (long long)e, el, (double)a / el, (double)a * bytes / el / 1e6, pct(0.50),
	       pct(0.99), pct(0.999), lat_n ? (double)lat_ms[lat_n - 1] : 0.0);
	free(sent_ns);
	free(lat_ms);

	free(payload);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_Close();
	return (s == NATS_OK && e == 0 && a == sent) ? 0 : 1;
}
