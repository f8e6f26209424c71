/*
 * kafka.h -- the Kafka wire-protocol front door: real Kafka clients produce, fetch and administer topics.
 *
 * Purpose: listen on a TCP address, speak the Kafka protocol (the API versions in kapi_table, see
 * docs/protocol.md), and translate every request into storage calls. One epoll loop per thread; each
 * thread has its own listening socket (SO_REUSEPORT) and owns the connections it accepts.
 * Invariants:
 *   1. Responses on a connection go out in request order; a request waiting for fsync or for data does not
 *      block the thread, and requests behind it are decoded and started meanwhile (so pipelined produces
 *      share one group commit).
 *   2. Every length and count from the wire is checked against a limit before use; a frame over
 *      max_request_bytes or an undecodable header closes the connection.
 *   3. acks=0 produces get no response bytes at all.
 * Threads: kafka_server_start spawns `threads` loop threads; stop joins them. kafka_server_notify_data is
 *   thread-safe (the storage calls it when a high watermark moves).
 * Ownership: the server borrows the storage_t, which must outlive it.
 */
#ifndef FL_KAFKA_KAFKA_H
#define FL_KAFKA_KAFKA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "storage/storage.h"

typedef struct kafka_server kafka_server_t;

typedef struct {
	const char *listen_host; /* default 127.0.0.1 */
	int listen_port;         /* default 9092; 0 picks a free port (see kafka_server_port) */
	const char *advertised_host; /* default: listen_host (127.0.0.1 if that is 0.0.0.0) */
	int advertised_port;         /* default: the bound port */
	int32_t node_id;             /* default 0 */
	int threads;                 /* default: number of CPUs */
	bool auto_create_topics;     /* default false */
	int32_t default_partitions;  /* for auto-created topics and CreateTopics with -1 (default 1) */
	int32_t max_request_bytes;   /* default 100 MiB (Kafka's socket.request.max.bytes) */
	int64_t max_inflight_bytes;  /* per connection, request bytes being processed (default 64 MiB) */
	int max_inflight_requests;   /* per connection (default 64) */
	int max_connections;         /* per server (default 10000) */
	int64_t idle_timeout_ms;     /* close connections idle this long (default 600000) */
	int64_t request_timeout_ms;  /* close a connection whose request stays incomplete this long (30000) */
	int32_t group_initial_delay_ms; /* an empty group's first rebalance waits this for more members (500) */
	int32_t group_max_session_ms;   /* longer session timeouts are refused and rebalance timeouts capped to it
					 * (Kafka's group.max.session.timeout.ms, default 1800000) */
} kafka_opts_t;

void kafka_opts_default(kafka_opts_t *o);
err_t kafka_server_start(storage_t *st, const kafka_opts_t *opts, kafka_server_t **out);
/* The port actually bound (useful with listen_port 0). */
int kafka_server_port(const kafka_server_t *s);
void kafka_server_stop(kafka_server_t *s);
/* Wakes parked fetches to look for new data. Thread-safe, cheap, coalesced. */
void kafka_server_notify_data(kafka_server_t *s);

#endif
