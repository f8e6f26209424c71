/*
 * fn_noop.c -- a function handler for benchmarks: answers every request line "ok" without parsing its
 * events. With LAT_OUT=FILE it also finds each event's "t" (the producer's send time, CLOCK_REALTIME ns, in
 * the event's JSON data) and appends "now - t" in microseconds, one per line, to FILE: the latency from
 * append to the handler receiving the event.
 *
 * It reads stdin with read(2) into one growing buffer and looks at each line where it lies: the kernel's
 * copy out of the pipe is its only pass over a request besides the search for the newline (getline added
 * a second copy of every 3.4 MB request, which the replay benchmark counted as the runtime's time).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Answers the request line [line, end) (end is its '\n'); 0, or 1 if it is not a request. */
static int answer(char *line, char *end, FILE *lat)
{
	int64_t now = now_ns();
	*end = 0; /* the string functions below stop at the line's end */
	/* the request starts {"id":"...": reply with the same id */
	const char *id = strstr(line, "\"id\":\"");
	if (id == NULL)
		return 1;
	id += 6;
	const char *idend = strchr(id, '"');
	if (idend == NULL)
		return 1;
	if (lat != NULL) {
		for (const char *p = strstr(idend, "\"t\":"); p != NULL; p = strstr(p + 4, "\"t\":")) {
			int64_t t = strtoll(p + 4, NULL, 10);
			if (t > 0)
				fprintf(lat, "%" PRId64 "\n", (now - t) / 1000);
		}
		fflush(lat);
	}
	printf("{\"id\":\"%.*s\",\"status\":\"ok\"}\n", (int)(idend - id), id);
	fflush(stdout);
	return 0;
}

int main(void)
{
	const char *lat_path = getenv("LAT_OUT");
	FILE *lat = lat_path ? fopen(lat_path, "a") : NULL;
	size_t cap = 4 << 20, len = 0, scanned = 0; /* scanned: bytes of buf known to hold no '\n' */
	char *buf = malloc(cap + 1);
	if (buf == NULL)
		return 1;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	for (;;) {
		if (len == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (nb == NULL)
				return 1;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(0, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		char *start = buf, *nl;
		while ((nl = memchr(start + scanned, '\n', len - (size_t)(start - buf) - scanned)) != NULL) {
			if (answer(start, nl, lat) != 0)
				return 1;
			start = nl + 1;
			scanned = 0;
		}
		size_t rest = len - (size_t)(start - buf);
		scanned = rest;
		if (start != buf)
			memmove(buf, start, rest); /* a partial line: at most one request's worth */
		len = rest;
	}
	free(buf);
	return 0;
}
