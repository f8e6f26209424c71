/*
 * fuzz_kafka_request.c -- libFuzzer target: one Kafka request frame through the real connection code
 * (framing, header, dispatch, every handler, response writing) on a socketpair, against a real storage
 * in a temp directory (flush=never, so nothing waits for the disk), with the group coordinator thread.
 * The input is the frame after its 4-byte length. Topic-mutating admin requests (CreateTopics,
 * DeleteTopics, AlterConfigs, CreatePartitions) are skipped: they would fill the disk with topics.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/fl_assert.h"
#include "core/log.h"
#include "kafka/kafka_int.h"
#include "storage/io.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static storage_t *st;
static kafka_server_t srv;
static kworker_t worker;
static char dir[] = "/tmp/factlog-fuzz-XXXXXX";

/* libFuzzer ends with exit(): the temp directory goes with it (a crash leaves it, next to the crash). */
static void remove_dir(void)
{
	io_remove_tree(io_posix(), dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_OFF);
	ASSERT(mkdtemp(dir) != NULL);
	atexit(remove_dir);
	storage_opts_t o;
	storage_opts_default(&o, dir);
	o.defaults.flush_policy = FLUSH_NEVER;
	o.defaults.segment_bytes = 1 << 20;
	o.defaults.retention_bytes = 4 << 20;
	o.retention_check_ms = 1000;
	ASSERT(storage_open(&o, &st) == OK);
	storage_topic_create(st, "t", 2, NULL, 0);
	srv.st = st;
	kafka_opts_default(&srv.opts);
	srv.opts.advertised_port = 9092;
	srv.opts.group_initial_delay_ms = 0; /* joins complete at once: nothing waits in the fuzz loop */
	/* The coordinator outlives each input: a member an earlier input left behind may make a join wait for
	 * its rebalance timeout. Capped, and sessions longer than that refused, so a wait fits the loop below. */
	srv.opts.group_max_session_ms = 2000;
	srv.advertised_host = strdup("127.0.0.1");
	pthread_mutex_init(&srv.pid_mu, NULL);
	srv.workers = &worker;
	srv.nworkers = 1;
	ASSERT(kworker_init(&worker, &srv) == OK);
	ASSERT(coord_start(&srv, &srv.coord) == OK);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > (1 << 20))
		return 0;
	int16_t key = (int16_t)(data[0] << 8 | data[1]);
	if (key == 19 || key == 20 || key == 33 || key == 37)
		return 0;
	int sv[2];
	ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	int big = 4 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
	atomic_fetch_add(&srv.nconns, 1);
	kafka_conn_new(&worker, sv[0], "fuzz");
	uint8_t len[4];
	be32_store(len, (uint32_t)size);
	ssize_t n = write(sv[1], len, 4);
	n = write(sv[1], data, size);
	(void)n;
	uint8_t sink[65536];
	for (int i = 0; i < 8; i++) { /* let the request run and its response go out */
		loop_run_once(worker.loop, 0);
		while (read(sv[1], sink, sizeof sink) > 0)
			;
	}
	shutdown(sv[1], SHUT_RDWR); /* the client goes away: parked fetches end, the connection is freed */
	for (int i = 0; i < 5000 && worker.conns != NULL; i++) { /* group requests round-trip a thread */
		loop_run_once(worker.loop, 1);
		while (read(sv[1], sink, sizeof sink) > 0)
			;
	}
	ASSERT(worker.conns == NULL);
	close(sv[1]);
	return 0;
}
