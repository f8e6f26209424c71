/*
 * err.h -- the one error type of factlog.
 *
 * Purpose: every fallible function returns err_t (or an ssize_t that is either a count or an err_t).
 * Invariants:
 *   1. OK is 0; every error is negative.
 *   2. System errors travel as -errno (ERR_SYS(e)), so -ENOSPC stays -ENOSPC; factlog's own codes live
 *      below ERR_BASE so they never collide with an errno.
 *   3. Kafka ErrorCodes and HTTP statuses are response data, not err_t: the front doors map err_t to them.
 */
#ifndef FL_CORE_ERR_H
#define FL_CORE_ERR_H

#include <errno.h>

typedef int err_t;

#define OK 0
#define ERR_SYS(e) (-(e))
#define ERR_BASE (-10000)

enum {
	ERR_INCOMPLETE = ERR_BASE - 1,       /* need more input bytes; call again */
	ERR_MALFORMED = ERR_BASE - 2,        /* input bytes violate the format */
	ERR_LIMIT = ERR_BASE - 3,            /* a length or count exceeds a configured limit */
	ERR_CORRUPT = ERR_BASE - 4,          /* data on disk fails its checksum below the durable point */
	ERR_CRC = ERR_BASE - 5,              /* an incoming batch fails its CRC-32C */
	ERR_FAILED = ERR_BASE - 6,           /* the partition is in its sticky failed state */
	ERR_NOT_FOUND = ERR_BASE - 7,        /* no such topic, partition or key */
	ERR_EXISTS = ERR_BASE - 8,           /* the thing already exists */
	ERR_OUT_OF_RANGE = ERR_BASE - 9,     /* an offset outside [log start, high watermark] */
	ERR_INVALID = ERR_BASE - 10,         /* an argument or configuration value is invalid */
	ERR_CLOSED = ERR_BASE - 11,          /* the object is shutting down */
	ERR_TIMESTAMP = ERR_BASE - 12,       /* a batch's timestamps are not acceptable */
	ERR_TOO_LARGE = ERR_BASE - 13,       /* a batch exceeds max.message.bytes */
	ERR_META = ERR_BASE - 14,            /* the metadata store failed */
	ERR_SEQUENCE = ERR_BASE - 15,        /* an idempotent producer's sequence number is out of order */
	ERR_FENCED = ERR_BASE - 16,          /* an idempotent producer's epoch is older than the current one */
	ERR_AGAIN = ERR_BASE - 17,           /* not ready without waiting; it was started: ask again later */
	ERR_LAST = ERR_BASE - 18,
};

/* A short, static, human description of err ("No space left on device", "CRC-32C mismatch", ...). */
const char *err_str(err_t err);

/* True when err is a full-disk condition: the operation failed cleanly and may succeed once space is freed. */
static inline int err_is_nospace(err_t err)
{
	return err == ERR_SYS(ENOSPC) || err == ERR_SYS(EDQUOT);
}

#endif
