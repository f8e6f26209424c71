/* log.c -- leveled logging to stderr. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/compat.h"

static int threshold = LOG_LEVEL_INFO;

void log_set_level(int level)
{
	threshold = level;
}

int log_level_parse(const char *name)
{
	static const char *const names[] = { "debug", "info", "warn", "error", "off" };
	for (int i = 0; i <= LOG_LEVEL_OFF; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

void log_msg(int level, const char *fmt, ...)
{
	static const char *const tags[] = { "DEBUG", "INFO", "WARN", "ERROR" };
	if (level < threshold || level >= LOG_LEVEL_OFF)
		return;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char line[1024];
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 tags[level]);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof line)
		vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
