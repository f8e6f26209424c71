/*
 * log.h -- leveled logging to stderr.
 *
 * One line per message: "2026-11-22T03:50:07.123Z LEVEL message". The threshold is process-wide and set
 * once at startup (log_set_level) before threads start; it is the only mutable global of core/.
 */
#ifndef FL_CORE_LOG_H
#define FL_CORE_LOG_H

enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_OFF };

void log_set_level(int level);
int log_level_parse(const char *name); /* "debug".."off" -> level, or -1 */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
