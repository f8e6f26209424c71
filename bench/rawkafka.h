/*
 * rawkafka.h -- what bench/fetch_raw.c and bench/produce_raw.c share: big-endian fields, a blocking
 * loopback connection, whole reads and writes, and "--name value" options from a table.
 * Header-only (static functions) so each tool stays one file to read. Not a Kafka client: each tool builds
 * the one request it needs by hand.
 */
#ifndef FL_BENCH_RAWKAFKA_H
#define FL_BENCH_RAWKAFKA_H

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) << 16 | rd16(p + 2); }
static inline uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }
static inline uint8_t *wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; return p + 2; }
static inline uint8_t *wr32(uint8_t *p, uint32_t v) { return wr16(wr16(p, (uint16_t)(v >> 16)), (uint16_t)v); }
static inline uint8_t *wr64(uint8_t *p, uint64_t v) { return wr32(wr32(p, (uint32_t)(v >> 32)), (uint32_t)v); }

/* A Kafka string (int16 length) at p. */
static inline uint8_t *wrstr(uint8_t *p, const char *s)
{
	size_t n = strlen(s);
	p = wr16(p, (uint16_t)n);
	memcpy(p, s, n);
	return p + n;
}

/* A TCP connection to HOST:PORT with Nagle off (and a receive buffer of rcvbuf bytes when > 0); -1 on error. */
static inline int rk_dial(const char *hostport, int rcvbuf)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL || (size_t)(colon - hostport) >= sizeof host)
		return -1;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = 0;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (fd >= 0 && rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	return fd;
}

/* Sends (out) or receives all len bytes; false when the connection fails or closes first. */
static inline bool rk_io_full(int fd, uint8_t *buf, size_t len, bool out)
{
	while (len > 0) {
		ssize_t n = out ? send(fd, buf, len, MSG_NOSIGNAL) : recv(fd, buf, len, 0);
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* "--name value" options: 's' a string, 'i' an int, 'd' a double. */
typedef struct {
	const char *name;
	char type;
	void *dst;
} rk_opt_t;

/* Fills the table's destinations from argv; false (after saying why) on an unknown or valueless option. */
static inline bool rk_parse(int argc, char **argv, const rk_opt_t *opts, size_t n, const char *prog)
{
	for (int i = 1; i < argc; i += 2) {
		size_t k = 0;
		while (k < n && strcmp(argv[i], opts[k].name) != 0)
			k++;
		if (k == n || i + 1 >= argc) {
			fprintf(stderr, "%s: %s %s\n", prog, k == n ? "unknown option" : "no value for", argv[i]);
			return false;
		}
		const char *v = argv[i + 1];
		if (opts[k].type == 's')
			*(const char **)opts[k].dst = v;
		else if (opts[k].type == 'i')
			*(int *)opts[k].dst = atoi(v);
		else
			*(double *)opts[k].dst = atof(v);
	}
	return true;
}

#endif
