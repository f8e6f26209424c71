/* segment.c -- one segment: its .log, offset index and time index. See segment.h. */
#include "storage/segment.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/crc32c.h"
#include "core/fl_assert.h"
#include "core/log.h"

#define IDX_ENTRY 8
#define TIDX_ENTRY 12
#define IDX_MAGIC 0x464C5831u  /* "FLX1" */
#define TIDX_MAGIC 0x464C5431u /* "FLT1" */
#define IDX_TRAILER 48
#define TIDX_TRAILER 16
#define SCAN_BATCH_MAX (INT32_MAX - 64)

static err_t seg_file(const log_segment_t *seg, const char *ext, char *out, size_t cap)
{
	if (snprintf(out, cap, "%s/%s%s", seg->dir, seg->name, ext) >= (int)cap)
		return ERR_SYS(ENAMETOOLONG);
	return OK;
}

static log_segment_t *seg_new(io_t *io, const char *dir, int64_t base)
{
	log_segment_t *seg = calloc(1, sizeof *seg);
	ASSERT(seg != NULL);
	seg->io = io;
	seg->dir = strdup(dir);
	ASSERT(seg->dir != NULL);
	snprintf(seg->name, sizeof seg->name, "%020" PRId64, base);
	seg->base = base;
	seg->fd = -1;
	seg->next_offset = base;
	seg->max_ts = -1;
	seg->index_loaded = true;
	atomic_init(&seg->refs, 1);
	return seg;
}

static void seg_free(log_segment_t *seg)
{
	if (seg->fd >= 0)
		seg->io->close(seg->io, seg->fd);
	free(seg->idx);
	free(seg->tidx);
	free(seg->dir);
	free(seg);
}

err_t segment_create(io_t *io, const char *dir, int64_t base, log_segment_t **out)
{
	log_segment_t *seg = seg_new(io, dir, base);
	char path[PATH_MAX];
	err_t rc = seg_file(seg, ".log", path, sizeof path);
	if (rc == OK) {
		seg->fd = io->open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		rc = seg->fd < 0 ? seg->fd : OK;
	}
	if (rc != OK) {
		seg->fd = -1;
		seg_free(seg);
		return rc;
	}
	*out = seg;
	return OK;
}

static err_t read_trailer(log_segment_t *seg, int64_t log_size, uint32_t *count)
{
	char path[PATH_MAX];
	err_t rc = seg_file(seg, ".index", path, sizeof path);
	if (rc != OK)
		return rc;
	int fd = seg->io->open(seg->io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	int64_t fsz = 0;
	uint8_t t[IDX_TRAILER];
	rc = seg->io->fsize(seg->io, fd, &fsz);
	if (rc == OK && (fsz < IDX_TRAILER || (fsz - IDX_TRAILER) % IDX_ENTRY != 0))
		rc = ERR_MALFORMED;
	if (rc == OK)
		rc = io_pread_all(seg->io, fd, t, sizeof t, fsz - IDX_TRAILER);
	seg->io->close(seg->io, fd);
	if (rc != OK)
		return rc;
	if (be32_load(t) != IDX_MAGIC || crc32c(0, t, IDX_TRAILER - 4) != be32_load(t + IDX_TRAILER - 4))
		return ERR_MALFORMED;
	*count = be32_load(t + 4);
	if ((int64_t)*count * IDX_ENTRY != fsz - IDX_TRAILER)
		return ERR_MALFORMED;
	int64_t size = (int64_t)be64_load(t + 16), next = (int64_t)be64_load(t + 24);
	if (size != log_size || next < seg->base)
		return ERR_MALFORMED;
	seg->size = size;
	seg->alloc = size;
	seg->next_offset = next;
	seg->max_ts = (int64_t)be64_load(t + 32);
	return OK;
}

err_t segment_open(io_t *io, const char *dir, int64_t base, log_segment_t **out, bool *sealed_ok)
{
	log_segment_t *seg = seg_new(io, dir, base);
	char path[PATH_MAX];
	err_t rc = seg_file(seg, ".log", path, sizeof path);
	if (rc == OK) {
		seg->fd = io->open(io, path, O_RDWR, 0);
		rc = seg->fd < 0 ? seg->fd : OK;
	}
	int64_t fsz = 0;
	if (rc == OK)
		rc = io->fsize(io, seg->fd, &fsz);
	if (rc != OK) {
		if (seg->fd < 0)
			seg->fd = -1;
		seg_free(seg);
		return rc;
	}
	uint32_t count;
	*sealed_ok = read_trailer(seg, fsz, &count) == OK;
	if (*sealed_ok) {
		seg->sealed = true;
		seg->dir_synced = true;
		seg->index_loaded = false;
	} else {
		seg->alloc = fsz;
	}
	*out = seg;
	return OK;
}

static void idx_push(log_segment_t *seg, uint32_t rel, uint32_t pos)
{
	if (seg->nidx == seg->capidx) {
		seg->capidx = seg->capidx ? seg->capidx * 2 : 64;
		seg->idx = realloc(seg->idx, seg->capidx * sizeof *seg->idx);
		ASSERT(seg->idx != NULL);
	}
	seg->idx[seg->nidx].rel_offset = rel;
	seg->idx[seg->nidx].pos = pos;
	seg->nidx++;
}

static void tidx_push(log_segment_t *seg, int64_t ts, uint32_t rel)
{
	if (seg->ntidx == seg->captidx) {
		seg->captidx = seg->captidx ? seg->captidx * 2 : 64;
		seg->tidx = realloc(seg->tidx, seg->captidx * sizeof *seg->tidx);
		ASSERT(seg->tidx != NULL);
	}
	seg->tidx[seg->ntidx].ts = ts;
	seg->tidx[seg->ntidx].rel_offset = rel;
	seg->ntidx++;
}

/* Records a batch at pos in the in-memory indexes and the segment summary. */
static void index_batch(log_segment_t *seg, const rb_header_t *h, int64_t pos, int interval)
{
	ASSERT(h->base_offset == seg->next_offset); /* invariant 1: dense offsets */
	uint32_t rel = (uint32_t)(h->base_offset - seg->base);
	if (pos > 0 && pos - seg->idx_last_pos >= interval) {
		idx_push(seg, rel, (uint32_t)pos);
		seg->idx_last_pos = pos;
	}
	if (h->max_timestamp > seg->max_ts) {
		seg->max_ts = h->max_timestamp;
		seg->max_ts_rel = rel;
		if (seg->ntidx == 0 || pos - seg->tidx_last_pos >= interval) {
			tidx_push(seg, h->max_timestamp, rel);
			seg->tidx_last_pos = pos;
		}
	}
	seg->next_offset = rb_last_offset(h) + 1;
}

static void reset_index(log_segment_t *seg)
{
	seg->nidx = seg->ntidx = 0;
	seg->idx_last_pos = seg->tidx_last_pos = 0;
	seg->next_offset = seg->base;
	seg->max_ts = -1;
	seg->max_ts_rel = 0;
}

err_t segment_scan(log_segment_t *seg, int index_interval, seg_scan_t *res)
{
	int64_t fsz;
	err_t rc = seg->io->fsize(seg->io, seg->fd, &fsz);
	if (rc != OK)
		return rc;
	reset_index(seg);
	buf_t b = { 0 };
	int64_t pos = 0;
	res->bad_pos = -1;
	res->bad_err = OK;
	while (pos < fsz) {
		rb_header_t h;
		uint8_t hdr[RB_HEADER_LEN];
		err_t bad = OK;
		if (fsz - pos < RB_HEADER_LEN)
			bad = ERR_INCOMPLETE;
		else if ((rc = io_pread_all(seg->io, seg->fd, hdr, sizeof hdr, pos)) != OK)
			break;
		else if ((bad = rb_header_decode(hdr, sizeof hdr, &h)) == OK &&
			 (rb_total_len(&h) > fsz - pos || rb_total_len(&h) > SCAN_BATCH_MAX))
			bad = ERR_INCOMPLETE;
		if (bad == OK && h.base_offset != seg->next_offset)
			bad = ERR_MALFORMED;
		if (bad == OK) {
			b.len = 0;
			buf_reserve(&b, (size_t)rb_total_len(&h));
			rc = io_pread_all(seg->io, seg->fd, b.data, (size_t)rb_total_len(&h), pos);
			if (rc != OK)
				break;
			bad = rb_check_stored(b.data, (size_t)rb_total_len(&h), &h);
		}
		if (bad != OK) {
			res->bad_pos = pos;
			res->bad_err = bad;
			break;
		}
		index_batch(seg, &h, pos, index_interval);
		pos += rb_total_len(&h);
	}
	buf_free(&b);
	if (rc != OK)
		return rc;
	seg->size = pos;
	seg->alloc = fsz;
	seg->index_loaded = true;
	res->end_pos = pos;
	res->next_offset = seg->next_offset;
	return OK;
}

err_t segment_append(log_segment_t *seg, const uint8_t *batch, size_t len, const rb_header_t *h,
		     int index_interval, bool *partial_left)
{
	ASSERT(!seg->sealed && !seg->seal_pending);
	*partial_left = false;
	err_t rc = io_pwrite_all(seg->io, seg->fd, batch, len, seg->size);
	if (rc != OK) {
		/* Undo a partial write so no torn batch stays behind the valid data. */
		if (seg->io->ftruncate(seg->io, seg->fd, seg->size) == OK)
			seg->alloc = seg->size;
		else
			*partial_left = true;
		return rc;
	}
	index_batch(seg, h, seg->size, index_interval);
	seg->size += (int64_t)len;
	if (seg->alloc < seg->size)
		seg->alloc = seg->size;
	seg->unsynced = true;
	return OK;
}

static err_t load_file(io_t *io, const char *path, buf_t *b)
{
	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	int64_t fsz = 0;
	err_t rc = io->fsize(io, fd, &fsz);
	if (rc == OK && fsz > (int64_t)1 << 31)
		rc = ERR_MALFORMED;
	if (rc == OK) {
		buf_reserve(b, (size_t)fsz + 1);
		rc = io_pread_all(io, fd, b->data, (size_t)fsz, 0);
		b->len = (size_t)fsz;
	}
	io->close(io, fd);
	return rc;
}

static err_t parse_index_files(log_segment_t *seg)
{
	char path[PATH_MAX];
	buf_t b = { 0 };
	err_t rc = seg_file(seg, ".index", path, sizeof path);
	if (rc == OK)
		rc = load_file(seg->io, path, &b);
	if (rc == OK && (b.len < IDX_TRAILER || (b.len - IDX_TRAILER) % IDX_ENTRY != 0))
		rc = ERR_MALFORMED;
	if (rc == OK) {
		size_t n = (b.len - IDX_TRAILER) / IDX_ENTRY;
		const uint8_t *t = b.data + b.len - IDX_TRAILER;
		if (be32_load(t + 4) != n || crc32c(0, b.data, n * IDX_ENTRY) != be32_load(t + 8))
			rc = ERR_MALFORMED;
		for (size_t i = 0; rc == OK && i < n; i++) {
			uint32_t rel = be32_load(b.data + i * IDX_ENTRY), pos = be32_load(b.data + i * IDX_ENTRY + 4);
			if (pos >= seg->size || (int64_t)rel >= seg->next_offset - seg->base ||
			    (i > 0 && (rel <= seg->idx[i - 1].rel_offset || pos <= seg->idx[i - 1].pos)))
				rc = ERR_MALFORMED;
			else
				idx_push(seg, rel, pos);
		}
	}
	b.len = 0;
	if (rc == OK)
		rc = seg_file(seg, ".timeindex", path, sizeof path);
	if (rc == OK)
		rc = load_file(seg->io, path, &b);
	if (rc == OK && (b.len < TIDX_TRAILER || (b.len - TIDX_TRAILER) % TIDX_ENTRY != 0))
		rc = ERR_MALFORMED;
	if (rc == OK) {
		size_t n = (b.len - TIDX_TRAILER) / TIDX_ENTRY;
		const uint8_t *t = b.data + b.len - TIDX_TRAILER;
		if (be32_load(t) != TIDX_MAGIC || be32_load(t + 4) != n ||
		    crc32c(0, b.data, n * TIDX_ENTRY) != be32_load(t + 8))
			rc = ERR_MALFORMED;
		for (size_t i = 0; rc == OK && i < n; i++) {
			int64_t ts = (int64_t)be64_load(b.data + i * TIDX_ENTRY);
			uint32_t rel = be32_load(b.data + i * TIDX_ENTRY + 8);
			if ((int64_t)rel >= seg->next_offset - seg->base || ts > seg->max_ts ||
			    (i > 0 && (ts <= seg->tidx[i - 1].ts || rel <= seg->tidx[i - 1].rel_offset)))
				rc = ERR_MALFORMED;
			else
				tidx_push(seg, ts, rel);
		}
	}
	buf_free(&b);
	return rc;
}

err_t segment_load_index(log_segment_t *seg, int index_interval)
{
	if (seg->index_loaded)
		return OK;
	int64_t size = seg->size, next = seg->next_offset, max_ts = seg->max_ts;
	err_t rc = parse_index_files(seg);
	if (rc == OK) {
		seg->index_loaded = true;
		return OK;
	}
	log_warn("segment %s/%s: index unreadable (%s); rebuilding it from the log", seg->dir, seg->name,
		 err_str(rc));
	free(seg->idx);
	free(seg->tidx);
	seg->idx = NULL;
	seg->tidx = NULL;
	seg->capidx = seg->captidx = 0;
	seg_scan_t res;
	rc = segment_scan(seg, index_interval, &res);
	if (rc != OK)
		return rc;
	if (res.end_pos != size || res.next_offset != next) {
		log_error("segment %s/%s: sealed with %" PRId64 " bytes but only %" PRId64
			  " are valid (%s); refusing to lose acknowledged data",
			  seg->dir, seg->name, size, res.end_pos, err_str(res.bad_err));
		seg->size = size;
		seg->alloc = size;
		seg->next_offset = next;
		seg->index_loaded = false;
		seg->max_ts = max_ts;
		seg->nidx = seg->ntidx = 0;
		return ERR_CORRUPT;
	}
	segment_close_index(seg);
	return segment_write_index(seg, seg->dir);
}

static err_t read_header(log_segment_t *seg, int64_t pos, int64_t limit_pos, rb_header_t *h)
{
	uint8_t hdr[RB_HEADER_LEN];
	if (pos + RB_HEADER_LEN > limit_pos)
		return ERR_CORRUPT;
	err_t rc = io_pread_all(seg->io, seg->fd, hdr, sizeof hdr, pos);
	if (rc == OK)
		rc = rb_header_decode(hdr, sizeof hdr, h);
	if (rc == OK && pos + rb_total_len(h) > limit_pos)
		rc = ERR_CORRUPT;
	if (rc == ERR_MALFORMED || rc == ERR_INCOMPLETE)
		rc = ERR_CORRUPT;
	return rc;
}

/* The last offset-index entry at or below rel (binary search); pos 0 when none. */
static const seg_idx_t *idx_floor(const log_segment_t *seg, uint32_t rel)
{
	size_t lo = 0, hi = seg->nidx;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (seg->idx[mid].rel_offset <= rel)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? &seg->idx[lo - 1] : NULL;
}

int64_t segment_index_floor(const log_segment_t *seg, int64_t offset)
{
	ASSERT(seg->index_loaded);
	ASSERT(offset >= seg->base);
	const seg_idx_t *e = idx_floor(seg, (uint32_t)(offset - seg->base));
	return e ? e->pos : 0;
}

bool segment_index_jump(const log_segment_t *seg, int64_t after_pos, int64_t want_pos, int64_t limit_pos,
			int64_t *pos, int64_t *base_offset)
{
	ASSERT(seg->index_loaded);
	size_t lo = 0, hi = seg->nidx;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (seg->idx[mid].pos <= want_pos && seg->idx[mid].pos <= limit_pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || seg->idx[lo - 1].pos <= after_pos)
		return false;
	*pos = seg->idx[lo - 1].pos;
	*base_offset = seg->base + seg->idx[lo - 1].rel_offset;
	return true;
}

err_t segment_seek(log_segment_t *seg, int64_t start_pos, int64_t offset, int64_t limit_pos, int64_t *pos_out,
		   int64_t *base_offset)
{
	int64_t pos = start_pos;
	for (int guard = 0; guard < (1 << 24); guard++) {
		rb_header_t h;
		err_t rc = read_header(seg, pos, limit_pos, &h);
		if (rc != OK)
			return rc;
		if (rb_last_offset(&h) >= offset) {
			if (h.base_offset > offset)
				return ERR_CORRUPT; /* the index pointed past the offset */
			*pos_out = pos;
			*base_offset = h.base_offset;
			return OK;
		}
		pos += rb_total_len(&h);
	}
	return ERR_CORRUPT;
}

err_t segment_extend(log_segment_t *seg, int64_t *end_pos, int64_t *next_offset, int64_t want_pos,
		     int64_t limit_pos, bool force_first)
{
	int64_t end = *end_pos;
	for (int guard = 0; guard < (1 << 24) && end < limit_pos; guard++) {
		rb_header_t h;
		err_t rc = read_header(seg, end, limit_pos, &h);
		if (rc != OK)
			return rc;
		if (end + rb_total_len(&h) > want_pos && !(force_first && guard == 0))
			break;
		end += rb_total_len(&h);
		*next_offset = rb_last_offset(&h) + 1;
	}
	*end_pos = end;
	return OK;
}

/* Within one batch, the first record with timestamp >= ts (uncompressed batches; else the batch). */
static int64_t record_for_time(log_segment_t *seg, int64_t pos, const rb_header_t *h, int64_t ts,
			       int64_t *found_ts)
{
	*found_ts = h->max_timestamp;
	if (rb_codec(h) != RB_CODEC_NONE || (h->attributes & RB_ATTR_LOG_APPEND_TIME))
		return h->base_offset;
	buf_t b = { 0 };
	int64_t result = h->base_offset;
	buf_reserve(&b, (size_t)rb_total_len(h));
	if (io_pread_all(seg->io, seg->fd, b.data, (size_t)rb_total_len(h), pos) == OK) {
		reader_t r = reader_make(b.data + RB_HEADER_LEN, (size_t)rb_total_len(h) - RB_HEADER_LEN);
		for (int32_t i = 0; i < h->records_count && r.err == OK; i++) {
			rb_record_t rec;
			rb_record_next(&r, &rec);
			if (r.err == OK && h->base_timestamp + rec.timestamp_delta >= ts) {
				result = h->base_offset + rec.offset_delta;
				*found_ts = h->base_timestamp + rec.timestamp_delta;
				break;
			}
		}
	}
	buf_free(&b);
	return result;
}

err_t segment_find_time(log_segment_t *seg, int64_t ts, int64_t limit_pos, int64_t *offset, int64_t *found_ts)
{
	ASSERT(seg->index_loaded);
	if (seg->max_ts < ts)
		return ERR_NOT_FOUND;
	/* The last time-index entry below ts: every batch before it has a smaller maximum. */
	int64_t start_rel = 0;
	for (size_t lo = 0, hi = seg->ntidx; lo < hi;) {
		size_t mid = (lo + hi) / 2;
		if (seg->tidx[mid].ts < ts) {
			start_rel = seg->tidx[mid].rel_offset;
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	int64_t pos, base, floor = segment_index_floor(seg, seg->base + start_rel);
	if (floor >= limit_pos)
		return ERR_NOT_FOUND; /* only batches not yet readable could qualify */
	err_t rc = segment_seek(seg, floor, seg->base + start_rel, limit_pos, &pos, &base);
	if (rc == ERR_CORRUPT)
		return ERR_NOT_FOUND; /* the start lies past the readable limit (not yet durable) */
	if (rc != OK)
		return rc;
	for (int guard = 0; guard < (1 << 24) && pos < limit_pos; guard++) {
		rb_header_t h;
		rc = read_header(seg, pos, limit_pos, &h);
		if (rc != OK)
			return rc;
		if (h.max_timestamp >= ts) {
			*offset = record_for_time(seg, pos, &h, ts, found_ts);
			return OK;
		}
		pos += rb_total_len(&h);
	}
	return ERR_NOT_FOUND;
}

err_t segment_finish_log(log_segment_t *seg)
{
	err_t rc = OK;
	if (seg->alloc != seg->size) {
		rc = seg->io->ftruncate(seg->io, seg->fd, seg->size);
		if (rc == OK)
			seg->alloc = seg->size;
	}
	if (rc == OK)
		rc = seg->io->fdatasync(seg->io, seg->fd);
	if (rc == OK)
		seg->unsynced = false;
	return rc;
}

void segment_close_index(log_segment_t *seg)
{
	/* The final maximum gets an entry so the time index ends at the segment's max timestamp. */
	if (seg->max_ts >= 0 && (seg->ntidx == 0 || seg->tidx[seg->ntidx - 1].ts < seg->max_ts))
		tidx_push(seg, seg->max_ts, (uint32_t)seg->max_ts_rel);
}

err_t segment_write_index(log_segment_t *seg, const char *dir)
{
	ASSERT(seg->index_loaded);
	buf_t b = { 0 };
	char name[40];
	for (size_t i = 0; i < seg->nidx; i++) {
		buf_put_be32(&b, seg->idx[i].rel_offset);
		buf_put_be32(&b, seg->idx[i].pos);
	}
	uint32_t crc = crc32c(0, b.data, b.len);
	size_t tstart = b.len;
	buf_put_be32(&b, IDX_MAGIC);
	buf_put_be32(&b, (uint32_t)seg->nidx);
	buf_put_be32(&b, crc);
	buf_put_be32(&b, 0);
	buf_put_be64(&b, (uint64_t)seg->size);
	buf_put_be64(&b, (uint64_t)seg->next_offset);
	buf_put_be64(&b, (uint64_t)seg->max_ts);
	buf_put_be32(&b, 0);
	buf_put_be32(&b, crc32c(0, b.data + tstart, IDX_TRAILER - 4));
	ASSERT(b.len - tstart == IDX_TRAILER);
	buf_t ib = b; /* the offset index, written last: its trailer is what marks the segment sealed */
	b = (buf_t){ 0 };
	for (size_t i = 0; i < seg->ntidx; i++) {
		buf_put_be64(&b, (uint64_t)seg->tidx[i].ts);
		buf_put_be32(&b, seg->tidx[i].rel_offset);
	}
	crc = crc32c(0, b.data, b.len);
	buf_put_be32(&b, TIDX_MAGIC);
	buf_put_be32(&b, (uint32_t)seg->ntidx);
	buf_put_be32(&b, crc);
	buf_put_be32(&b, 0);
	snprintf(name, sizeof name, "%s.timeindex", seg->name);
	err_t rc = io_write_file_atomic(seg->io, dir, name, b.data, b.len);
	snprintf(name, sizeof name, "%s.index", seg->name);
	if (rc == OK)
		rc = io_write_file_atomic(seg->io, dir, name, ib.data, ib.len);
	buf_free(&b);
	buf_free(&ib);
	return rc;
}

void segment_drop_index_files(log_segment_t *seg)
{
	char path[PATH_MAX];
	if (seg_file(seg, ".index", path, sizeof path) == OK)
		seg->io->unlink(seg->io, path);
	if (seg_file(seg, ".timeindex", path, sizeof path) == OK)
		seg->io->unlink(seg->io, path);
	seg->sealed = false;
}

err_t segment_truncate(log_segment_t *seg, int64_t pos)
{
	err_t rc = seg->io->ftruncate(seg->io, seg->fd, pos);
	if (rc == OK) {
		seg->alloc = pos;
		seg->size = pos;
	}
	return rc;
}

void segment_ref(log_segment_t *seg)
{
	atomic_fetch_add(&seg->refs, 1);
}

void segment_unref(log_segment_t *seg)
{
	if (atomic_fetch_sub(&seg->refs, 1) != 1)
		return;
	if (seg->fd >= 0) {
		seg->io->close(seg->io, seg->fd);
		seg->fd = -1;
	}
	if (seg->deleted) {
		static const char *const exts[] = { ".log", ".index", ".timeindex" };
		for (int i = 0; i < 3; i++) {
			char path[PATH_MAX];
			if (seg_file(seg, exts[i], path, sizeof path) == OK)
				seg->io->unlink(seg->io, path);
		}
	}
	if (seg->on_free != NULL)
		seg->on_free(seg->on_free_arg, seg->base);
	seg_free(seg);
}
