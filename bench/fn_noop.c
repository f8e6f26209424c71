/*
 * fn_noop.c -- a function handler for benchmarks: answers every request line "ok" without parsing its
 * events. With LAT_OUT=FILE it also finds each event's "t" (the producer's send time, CLOCK_REALTIME ns, in
 * the event's JSON data) and appends "now - t" in microseconds, one per line, to FILE: the latency from
 * append to the handler receiving the event.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(void)
{
	const char *lat_path = getenv("LAT_OUT");
	FILE *lat = lat_path ? fopen(lat_path, "a") : NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	setvbuf(stdin, NULL, _IOFBF, 1 << 20); /* a batch in a few reads (the runtime sizes its pipe to 1 MiB) */
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	while ((n = getline(&line, &cap, stdin)) > 0) {
		int64_t now = now_ns();
		/* the request starts {"id":"...": reply with the same id */
		const char *id = strstr(line, "\"id\":\"");
		if (id == NULL)
			return 1;
		id += 6;
		const char *end = strchr(id, '"');
		if (end == NULL)
			return 1;
		if (lat != NULL) {
			for (const char *p = strstr(end, "\"t\":"); p != NULL; p = strstr(p + 4, "\"t\":")) {
				int64_t t = strtoll(p + 4, NULL, 10);
				if (t > 0)
					fprintf(lat, "%" PRId64 "\n", (now - t) / 1000);
			}
			fflush(lat);
		}
		printf("{\"id\":\"%.*s\",\"status\":\"ok\"}\n", (int)(end - id), id);
		fflush(stdout);
	}
	free(line);
	return 0;
}
