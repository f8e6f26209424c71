/* NATS JetStream publish throughput, for bench/compare: creates a file-store stream, then publishes
 * fixed-size messages asynchronously (at most MAX_PENDING un-acked) for SECONDS, waits for every PubAck
 * and prints one line:
 *   RESULT msgs=N acked=N errors=N seconds=S msg_per_s=R mbps=M
 * MB/s counts payload bytes only (1 MB = 10^6 bytes).
 * Usage: nats_js URL SECONDS [MSG_BYTES (1024)] [MAX_PENDING (256)] */
#include <nats/nats.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile int64_t acked, errors;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)closure;
	if (pa != NULL && pae == NULL)
		__atomic_add_fetch(&acked, 1, __ATOMIC_RELAXED);
	else
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
	if (payload == NULL)
		return 1;
	memset(payload, 'x', (size_t)bytes);

	int64_t sent = 0;
	double t0 = now_s(), end = t0 + secs;
	while (1) {
		/* Check the clock every 256 messages. */
		if ((sent & 255) == 0 && now_s() >= end)
			break;
		/* Blocks (StallWait) while MAX_PENDING publishes are un-acked. */
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
	printf("RESULT msgs=%lld acked=%lld errors=%lld seconds=%.2f msg_per_s=%.0f mbps=%.1f\n", (long long)sent,
	       (long long)a, (long long)e, el, (double)a / el, (double)a * bytes / el / 1e6);

	free(payload);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_Close();
	return (s == NATS_OK && e == 0 && a == sent) ? 0 : 1;
}
