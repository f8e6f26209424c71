/* err.c -- descriptions of err_t values. */
#include "core/err.h"

#include <string.h>

const char *err_str(err_t err)
{
	switch (err) {
	case OK: return "ok";
	case ERR_INCOMPLETE: return "incomplete input";
	case ERR_MALFORMED: return "malformed input";
	case ERR_LIMIT: return "a length or count exceeds a configured limit";
	case ERR_CORRUPT: return "on-disk data fails its checksum below the durable point";
	case ERR_CRC: return "CRC-32C mismatch";
	case ERR_FAILED: return "partition failed after an I/O error; restart to recover from disk";
	case ERR_NOT_FOUND: return "not found";
	case ERR_EXISTS: return "already exists";
	case ERR_OUT_OF_RANGE: return "offset out of range";
	case ERR_INVALID: return "invalid argument";
	case ERR_CLOSED: return "closed";
	case ERR_TIMESTAMP: return "invalid timestamp";
	case ERR_TOO_LARGE: return "batch larger than max.message.bytes";
	case ERR_META: return "metadata store failure";
	case ERR_SEQUENCE: return "out-of-order sequence number from an idempotent producer";
	case ERR_FENCED: return "producer epoch is older than the current one";
	case ERR_AGAIN: return "not ready yet: being fetched";
	default: break;
	}
	if (err < 0 && err > ERR_BASE)
		return strerror(-err);
	return "unknown error";
}
