/*
 * partition.c -- append, group commit, read, recovery and retention of one partition. See partition.h.
 *
 * NOTES ON THE DESIGN
 * - The segments array is sorted by base offset; the last element is the active segment. Rolled segments
 *   stay `seal_pending` until the flusher has truncated their preallocation, fsynced them and written
 *   their index files; only sealed segments are eligible for retention.
 * - Group commit: partition_flush snapshots (log_end, active segment, its size) under the lock, runs
 *   fdatasync on every segment with unsynced bytes outside the lock (appends continue meanwhile), then
 *   advances durable_end to the snapshot and completes the waiters it covers. One fdatasync serves every
 *   append that landed before the snapshot.
 * - Zeros ahead: fallocate reserves the active segment's space as unwritten extents, and the first
 *   fdatasync after an append into one must also write the inode (the extent turned written): about a
 *   third more CPU and latency per fsync on ext4. When flush rounds are small (single events, many fsyncs
 *   per MiB), the flusher writes real zeros a little ahead of the data, under the lock so no append lands
 *   there meanwhile; they reach the disk with the next round and later rounds write data blocks only. Large
 *   rounds skip it: there the inode write is amortised and the zeros would double the bytes written.
 * - The recovery point (file `recovery-point`) records a durable (segment, position, offset) triple in two
 *   alternating 64-byte slots, each with its own CRC, so a torn write of one slot leaves the other. On open
 *   an invalid batch below it is corruption of acknowledged data, above it a torn tail.
 */
#include "storage/partition.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/crc32c.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "storage/codec.h"
#include "storage/producers.h"
#include "storage/recordbatch.h"
#include "storage/segment.h"

#define CKPT_NAME "recovery-point"
#define CKPT_SLOT 64
#define CKPT_MAGIC 0x464C5250u /* "FLRP" */

typedef struct {
	uint64_t seq;
	int64_t seg_base, pos, offset;
} ckpt_t;

struct partition {
	partition_env_t env;
	char *dir;
	partition_config_t cfg;
	pthread_mutex_t mu;
	pthread_mutex_t flush_mu; /* held for a whole flush round; taken before mu */
	log_segment_t **segs;
	size_t nsegs, capsegs;
	int64_t log_end;
	int64_t durable_end, durable_seg_base, durable_pos;
	err_t failed;
	partition_waiter_t *wait_head, *wait_tail;
	bool flushing, dirty_notified;
	int64_t flushes;
	int64_t round_bytes_avg; /* bytes made durable per flush round, a moving average (flusher only) */
	prod_table_t producers;
	int ckpt_fd;
	ckpt_t ckpt;          /* the last recovery point persisted */
	int64_t ckpt_last_ms; /* monotonic ms of that write */
	/* the archive: a list of segments below (and overlapping) the local ones, under mu */
	archived_seg_t *arch;
	size_t narch;
	archive_fetch_fn arch_fetch;
	archive_release_fn arch_release;
	void *arch_arg;
	/* archived segments opened for reading (a small cache), under arch_mu; each holds a reference */
	pthread_mutex_t arch_mu;
	log_segment_t *arch_open[4];
	int arch_next_slot;
};

void partition_config_default(partition_config_t *cfg)
{
	cfg->segment_bytes = (int64_t)1 << 30;
	cfg->segment_ms = 7ll * 24 * 3600 * 1000;
	cfg->retention_bytes = -1;
	cfg->retention_ms = 7ll * 24 * 3600 * 1000;
	cfg->max_message_bytes = 1048588;
	cfg->index_interval_bytes = 4096;
	cfg->preallocate_bytes = 64ll << 20;
	cfg->log_append_time = false;
	cfg->flush_policy = FLUSH_ALWAYS;
	cfg->flush_interval_ms = 1000;
	cfg->checkpoint_interval_ms = 1000;
	cfg->remote_storage = false;
	cfg->local_retention_ms = -2;
	cfg->local_retention_bytes = -2;
}

static log_segment_t *active(const partition_t *p)
{
	ASSERT(p->nsegs > 0);
	return p->segs[p->nsegs - 1];
}

static int64_t hwm(const partition_t *p)
{
	return p->cfg.flush_policy == FLUSH_ALWAYS ? p->durable_end : p->log_end;
}

static int64_t now_mono_ms(const partition_t *p)
{
	return clock_mono_ns(p->env.clock) / 1000000;
}

/* The byte limit readers may see in seg: whole batches below the high watermark. */
static int64_t read_limit(const partition_t *p, const log_segment_t *seg)
{
	if (p->cfg.flush_policy != FLUSH_ALWAYS || seg->next_offset <= p->durable_end)
		return seg->size;
	if (seg->base >= p->durable_end)
		return 0;
	ASSERT(seg->base == p->durable_seg_base);
	return p->durable_pos;
}

static void segs_push(partition_t *p, log_segment_t *seg)
{
	if (p->nsegs == p->capsegs) {
		p->capsegs = p->capsegs ? p->capsegs * 2 : 8;
		p->segs = realloc(p->segs, p->capsegs * sizeof *p->segs);
		ASSERT(p->segs != NULL);
	}
	ASSERT(p->nsegs == 0 || seg->base >= active(p)->next_offset);
	p->segs[p->nsegs++] = seg;
}

/* Index of the segment holding offset (the last with base <= offset). */
static size_t seg_for_offset(const partition_t *p, int64_t offset)
{
	size_t lo = 0, hi = p->nsegs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->segs[mid]->base <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	ASSERT(lo > 0);
	return lo - 1;
}

/* Detaches every waiter (for completion outside the lock). */
static partition_waiter_t *take_waiters(partition_t *p, int64_t below)
{
	partition_waiter_t *head = p->wait_head, *last = NULL, *w = head;
	while (w != NULL && (below == INT64_MAX || w->offset < below)) {
		last = w;
		w = w->next;
	}
	if (last == NULL)
		return NULL;
	last->next = NULL;
	p->wait_head = w;
	if (w == NULL)
		p->wait_tail = NULL;
	return head;
}

static void fire_waiters(partition_waiter_t *w, err_t status)
{
	while (w != NULL) {
		partition_waiter_t *next = w->next;
		w->next = NULL;
		w->cb(w, status);
		w = next;
	}
}

static void waiter_insert(partition_t *p, partition_waiter_t *w)
{
	w->next = NULL;
	if (p->wait_tail == NULL) {
		p->wait_head = p->wait_tail = w;
	} else if (p->wait_tail->offset <= w->offset) {
		p->wait_tail->next = w;
		p->wait_tail = w;
	} else { /* keep the list sorted by offset */
		partition_waiter_t **pp = &p->wait_head;
		while ((*pp)->offset <= w->offset)
			pp = &(*pp)->next;
		w->next = *pp;
		*pp = w;
	}
}

/* Enters FAILED (lock held); returns the waiters to fail outside the lock. */
static partition_waiter_t *fail_locked(partition_t *p, err_t err)
{
	if (p->failed == OK) {
		p->failed = err;
		log_error("partition %s: FAILED after an I/O error (%s); it refuses appends and reads until "
			  "factlog restarts and recovers it from disk",
			  p->dir, err_str(err));
	}
	return take_waiters(p, INT64_MAX);
}

void partition_retire(partition_t *p)
{
	pthread_mutex_lock(&p->mu);
	if (p->failed == OK)
		p->failed = ERR_CLOSED;
	partition_waiter_t *w = take_waiters(p, INT64_MAX);
	pthread_mutex_unlock(&p->mu);
	fire_waiters(w, ERR_CLOSED);
}

void partition_fail(partition_t *p, err_t err)
{
	pthread_mutex_lock(&p->mu);
	partition_waiter_t *w = fail_locked(p, err);
	pthread_mutex_unlock(&p->mu);
	fire_waiters(w, ERR_FAILED);
}

/* --- recovery point --- */

static void ckpt_encode(const ckpt_t *c, uint8_t *b)
{
	memset(b, 0, CKPT_SLOT);
	be32_store(b, CKPT_MAGIC);
	be64_store(b + 4, c->seq);
	be64_store(b + 12, (uint64_t)c->seg_base);
	be64_store(b + 20, (uint64_t)c->pos);
	be64_store(b + 28, (uint64_t)c->offset);
	be32_store(b + 36, crc32c(0, b, 36));
}

static bool ckpt_decode(const uint8_t *b, ckpt_t *c)
{
	if (be32_load(b) != CKPT_MAGIC || crc32c(0, b, 36) != be32_load(b + 36))
		return false;
	c->seq = be64_load(b + 4);
	c->seg_base = (int64_t)be64_load(b + 12);
	c->pos = (int64_t)be64_load(b + 20);
	c->offset = (int64_t)be64_load(b + 28);
	return c->seg_base >= 0 && c->pos >= 0 && c->offset >= c->seg_base;
}

static err_t ckpt_open(partition_t *p)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", p->dir, CKPT_NAME) >= (int)sizeof path)
		return ERR_SYS(ENAMETOOLONG);
	p->ckpt_fd = p->env.io->open(p->env.io, path, O_RDWR | O_CREAT, 0644);
	if (p->ckpt_fd < 0)
		return p->ckpt_fd;
	uint8_t b[2 * CKPT_SLOT];
	ssize_t n = p->env.io->pread(p->env.io, p->ckpt_fd, b, sizeof b, 0);
	memset(&p->ckpt, 0, sizeof p->ckpt);
	for (int i = 0; n > 0 && i < 2; i++) {
		ckpt_t c;
		if ((i + 1) * CKPT_SLOT <= n && ckpt_decode(b + i * CKPT_SLOT, &c) && c.seq > p->ckpt.seq)
			p->ckpt = c;
	}
	return OK;
}

static err_t ckpt_write(partition_t *p, int64_t seg_base, int64_t pos, int64_t offset)
{
	ckpt_t c = { p->ckpt.seq + 1, seg_base, pos, offset };
	uint8_t b[CKPT_SLOT];
	ckpt_encode(&c, b);
	err_t rc = io_pwrite_all(p->env.io, p->ckpt_fd, b, sizeof b, (int64_t)(c.seq % 2) * CKPT_SLOT);
	if (rc == OK)
		rc = p->env.io->fdatasync(p->env.io, p->ckpt_fd);
	if (rc == OK) {
		p->ckpt = c;
		p->ckpt_last_ms = now_mono_ms(p);
	}
	return rc;
}

/* The durable byte position inside segment base according to the recovery point. */
static int64_t ckpt_durable_pos(const partition_t *p, const log_segment_t *seg)
{
	if (p->ckpt.seq == 0 || p->ckpt.seg_base < seg->base)
		return 0;
	if (p->ckpt.seg_base > seg->base)
		return INT64_MAX; /* the whole segment */
	return p->ckpt.pos;
}

/* --- open and recovery --- */

typedef struct {
	partition_t *p;
	int64_t *bases;
	size_t n, cap;
} list_ctx_t;

static int list_entry(void *arg, const char *name)
{
	list_ctx_t *c = arg;
	size_t len = strlen(name);
	if (len > 4 && strcmp(name + len - 4, ".tmp") == 0) {
		char path[PATH_MAX];
		if (snprintf(path, sizeof path, "%s/%s", c->p->dir, name) < (int)sizeof path)
			c->p->env.io->unlink(c->p->env.io, path);
		return 0;
	}
	if (len != 24 || strcmp(name + 20, ".log") != 0)
		return 0;
	int64_t base = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9' || base > (INT64_MAX - 9) / 10)
			return 0;
		base = base * 10 + (name[i] - '0');
	}
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->bases = realloc(c->bases, c->cap * sizeof *c->bases);
		ASSERT(c->bases != NULL);
	}
	c->bases[c->n++] = base;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Scans seg and cuts a torn tail; ERR_CORRUPT if an invalid batch lies below the durable point. */
static err_t recover_segment(partition_t *p, log_segment_t *seg)
{
	seg_scan_t res;
	err_t rc = segment_scan(seg, p->cfg.index_interval_bytes, &res);
	if (rc != OK)
		return rc;
	int64_t durable = ckpt_durable_pos(p, seg);
	if (durable != INT64_MAX && res.end_pos < durable) {
		log_error("partition %s: segment %s ends at byte %" PRId64 " (%s) but byte %" PRId64
			  " was durable; refusing to drop acknowledged data",
			  p->dir, seg->name, res.end_pos, err_str(res.bad_err), durable);
		return ERR_CORRUPT;
	}
	if (res.bad_pos >= 0 && res.bad_pos < durable) {
		log_error("partition %s: segment %s has an invalid batch at byte %" PRId64 " (%s), below the "
			  "durable point (byte %" PRId64 "); refusing to drop acknowledged data",
			  p->dir, seg->name, res.bad_pos, err_str(res.bad_err),
			  durable == INT64_MAX ? res.bad_pos + 1 : durable);
		return ERR_CORRUPT;
	}
	if (res.end_pos < seg->alloc) {
		uint8_t probe[RB_HEADER_LEN] = { 0 }, zero[RB_HEADER_LEN] = { 0 };
		io_pread_all(seg->io, seg->fd, probe, sizeof probe, res.end_pos);
		if (memcmp(probe, zero, sizeof zero) != 0)
			log_warn("partition %s: truncating a torn tail of %" PRId64 " bytes after offset %" PRId64
				 " in segment %s (%s)",
				 p->dir, seg->alloc - res.end_pos, res.next_offset - 1, seg->name,
				 err_str(res.bad_err));
		rc = segment_truncate(seg, res.end_pos);
	}
	return rc;
}

static err_t open_segments(partition_t *p, const int64_t *bases, size_t n)
{
	err_t rc = OK;
	for (size_t i = 0; i < n && rc == OK; i++) {
		log_segment_t *seg;
		bool sealed_ok;
		rc = segment_open(p->env.io, p->dir, bases[i], &seg, &sealed_ok);
		if (rc != OK)
			break;
		if (p->nsegs > 0 && active(p)->next_offset != seg->base) {
			log_error("partition %s: gap between segments: offset %" PRId64 " expected, segment %s found",
				  p->dir, active(p)->next_offset, seg->name);
			segment_unref(seg);
			return ERR_CORRUPT;
		}
		segs_push(p, seg);
		bool last = i + 1 == n;
		if (sealed_ok && !last)
			continue;
		if (!sealed_ok) {
			rc = recover_segment(p, seg);
			if (rc != OK)
				break;
		}
		if (!last) {
			/* A rolled segment that never finished sealing: if it is complete (the next segment
			 * starts where it ends) seal it now; otherwise its tail was torn, so it becomes the
			 * active segment and later segments, past the durable point, are dropped. */
			if (seg->next_offset == bases[i + 1]) {
				rc = segment_finish_log(seg);
				if (rc == OK) {
					segment_close_index(seg);
					rc = segment_write_index(seg, p->dir);
				}
				if (rc == OK)
					seg->sealed = true;
				continue;
			}
			if (p->ckpt.seq != 0 && p->ckpt.offset > seg->next_offset) {
				log_error("partition %s: offset %" PRId64 " was durable but the log ends at %" PRId64
					  " in segment %s; refusing to drop later segments",
					  p->dir, p->ckpt.offset, seg->next_offset, seg->name);
				return ERR_CORRUPT;
			}
			for (size_t j = i + 1; j < n; j++) {
				if (p->ckpt.seq != 0 && bases[j] <= p->ckpt.seg_base) {
					log_error("partition %s: segment %020" PRId64 " lies below the durable point "
						  "but segment %s is short; refusing to drop it",
						  p->dir, bases[j], seg->name);
					return ERR_CORRUPT;
				}
				log_warn("partition %s: dropping segment %020" PRId64 " past a torn tail", p->dir,
					 bases[j]);
				log_segment_t *drop;
				bool ok2;
				if (segment_open(p->env.io, p->dir, bases[j], &drop, &ok2) == OK) {
					drop->deleted = true;
					segment_unref(drop);
				}
			}
			break;
		}
		/* The last segment becomes active. After a clean shutdown it was sealed: load its index
		 * and remove the files, which appends would make stale. */
		if (sealed_ok) {
			rc = segment_load_index(seg, p->cfg.index_interval_bytes);
			if (rc == OK)
				segment_drop_index_files(seg);
		}
	}
	return rc;
}

/* Idempotent-producer state from the batch headers of the last two segments (bounded work). */
static void rebuild_producers(partition_t *p)
{
	size_t from = p->nsegs > 2 ? p->nsegs - 2 : 0;
	for (size_t i = from; i < p->nsegs; i++) {
		log_segment_t *seg = p->segs[i];
		int64_t pos = 0;
		for (int guard = 0; guard < (1 << 26) && pos + RB_HEADER_LEN <= seg->size; guard++) {
			uint8_t hdr[RB_HEADER_LEN];
			rb_header_t h;
			if (io_pread_all(p->env.io, seg->fd, hdr, sizeof hdr, pos) != OK ||
			    rb_header_decode(hdr, sizeof hdr, &h) != OK)
				break;
			prod_record(&p->producers, &h);
			pos += rb_total_len(&h);
		}
	}
}

err_t partition_open(const partition_env_t *env, const char *dir, const partition_config_t *cfg,
		     partition_t **out)
{
	partition_t *p = calloc(1, sizeof *p);
	ASSERT(p != NULL);
	p->env = *env;
	p->dir = strdup(dir);
	ASSERT(p->dir != NULL);
	p->cfg = *cfg;
	p->ckpt_fd = -1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->flush_mu, NULL);
	pthread_mutex_init(&p->arch_mu, NULL);
	io_t *io = env->io;
	list_ctx_t lc = { p, NULL, 0, 0 };
	err_t rc = io->mkdir(io, dir);
	if (rc == ERR_SYS(EEXIST))
		rc = OK;
	if (rc == OK)
		rc = io->list(io, dir, list_entry, &lc);
	if (rc == OK)
		rc = ckpt_open(p);
	if (rc == OK) {
		if (lc.n > 1)
			qsort(lc.bases, lc.n, sizeof *lc.bases, cmp_i64);
		rc = open_segments(p, lc.bases, lc.n);
	}
	free(lc.bases);
	if (rc == OK && p->nsegs == 0) {
		if (p->ckpt.seq != 0 && p->ckpt.offset > 0) {
			log_error("partition %s: no segments, but the recovery point says offset %" PRId64
				  " was durable",
				  dir, p->ckpt.offset);
			rc = ERR_CORRUPT;
		} else {
			log_segment_t *seg;
			rc = segment_create(io, dir, 0, &seg);
			if (rc == OK)
				segs_push(p, seg);
		}
	}
	if (rc == OK) {
		log_segment_t *a = active(p);
		p->log_end = a->next_offset;
		if (p->ckpt.seq != 0 && p->ckpt.offset > p->log_end) {
			log_error("partition %s: log ends at offset %" PRId64 " but offset %" PRId64
				  " was acknowledged as durable",
				  dir, p->log_end, p->ckpt.offset);
			rc = ERR_CORRUPT;
		}
	}
	if (rc == OK) {
		/* What survived may sit only in the page cache (kill -9): make it durable before serving. */
		log_segment_t *a = active(p);
		a->created_ms = clock_wall_ms(env->clock);
		rc = io->fdatasync(io, a->fd);
		if (rc == OK)
			rc = io->fsync_dir(io, dir);
		a->dir_synced = true;
		p->durable_end = p->log_end;
		p->durable_seg_base = a->base;
		p->durable_pos = a->size;
	}
	if (rc == OK)
		rc = ckpt_write(p, p->durable_seg_base, p->durable_pos, p->durable_end);
	if (rc == OK)
		rebuild_producers(p);
	if (rc != OK) {
		for (size_t i = 0; i < p->nsegs; i++)
			segment_unref(p->segs[i]);
		if (p->ckpt_fd >= 0)
			io->close(io, p->ckpt_fd);
		free(p->segs);
		free(p->dir);
		pthread_mutex_destroy(&p->flush_mu);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return rc;
	}
	*out = p;
	return OK;
}

/* --- append --- */

static err_t maybe_roll(partition_t *p, size_t len)
{
	log_segment_t *a = active(p);
	int64_t now = clock_wall_ms(p->env.clock);
	if (a->size == 0)
		return OK;
	if (a->size + (int64_t)len <= p->cfg.segment_bytes && now - a->created_ms < p->cfg.segment_ms)
		return OK;
	log_segment_t *seg;
	err_t rc = segment_create(p->env.io, p->dir, p->log_end, &seg);
	if (rc != OK)
		return rc;
	segment_close_index(a);
	a->seal_pending = true;
	seg->created_ms = now;
	segs_push(p, seg);
	return OK;
}

err_t partition_append(partition_t *p, uint8_t *batch, size_t len, partition_waiter_t *w,
		       partition_append_t *res)
{
	rb_header_t h;
	err_t rc = rb_validate(batch, len, &h);
	if (rc == OK && rb_codec(&h) != RB_CODEC_NONE)
		rc = codec_validate_batch(batch, len); /* outside the lock: decompression costs CPU */
	if (rc != OK)
		return rc;
	pthread_mutex_lock(&p->mu);
	if (p->failed != OK) {
		pthread_mutex_unlock(&p->mu);
		return ERR_FAILED;
	}
	if (len > (size_t)p->cfg.max_message_bytes) {
		pthread_mutex_unlock(&p->mu);
		return ERR_TOO_LARGE;
	}
	rc = maybe_roll(p, len);
	if (rc != OK) {
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	prod_batch_t dup;
	rc = prod_check(&p->producers, &h, &dup);
	if (rc == 1) {
		res->duplicate = true;
		res->base_offset = dup.base;
		res->last_offset = dup.last;
		res->log_append_time = -1;
		res->log_start = p->segs[0]->base;
		res->ack_now = p->cfg.flush_policy != FLUSH_ALWAYS || dup.last < p->durable_end;
		if (w != NULL && !res->ack_now) {
			w->offset = dup.last;
			waiter_insert(p, w);
		}
		pthread_mutex_unlock(&p->mu);
		return OK;
	}
	if (rc != OK) {
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	res->duplicate = false;
	h.base_offset = p->log_end;
	rb_set_base_offset(batch, h.base_offset);
	rb_set_leader_epoch(batch, 0);
	res->log_append_time = -1;
	if (p->cfg.log_append_time) {
		res->log_append_time = clock_wall_ms(p->env.clock);
		rb_set_log_append_time(batch, len, res->log_append_time);
		h.max_timestamp = res->log_append_time;
		h.attributes |= RB_ATTR_LOG_APPEND_TIME;
	}
	bool partial;
	rc = segment_append(active(p), batch, len, &h, p->cfg.index_interval_bytes, &partial);
	if (rc != OK) {
		partition_waiter_t *failed = NULL;
		if (!err_is_nospace(rc) || partial)
			failed = fail_locked(p, rc);
		pthread_mutex_unlock(&p->mu);
		fire_waiters(failed, ERR_FAILED);
		return rc;
	}
	p->log_end = rb_last_offset(&h) + 1;
	prod_record(&p->producers, &h);
	partition_stats_append(p->env.stats, len, h.records_count);
	res->base_offset = h.base_offset;
	res->last_offset = rb_last_offset(&h);
	res->log_start = p->segs[0]->base;
	res->ack_now = p->cfg.flush_policy != FLUSH_ALWAYS;
	if (w != NULL && !res->ack_now) {
		w->offset = res->last_offset;
		waiter_insert(p, w);
	}
	bool notify = !p->dirty_notified;
	p->dirty_notified = true;
	pthread_mutex_unlock(&p->mu);
	if (notify && p->env.on_dirty != NULL)
		p->env.on_dirty(p->env.on_dirty_arg, p);
	if (res->ack_now && p->env.on_data != NULL) /* the high watermark moved with the append */
		p->env.on_data(p->env.on_data_arg, p);
	return OK;
}

int partition_wait(partition_t *p, int64_t offset, partition_waiter_t *w)
{
	pthread_mutex_lock(&p->mu);
	int rc;
	if (p->failed != OK)
		rc = ERR_FAILED;
	else if (offset < p->durable_end || p->cfg.flush_policy != FLUSH_ALWAYS)
		rc = 1;
	else if (offset >= p->log_end)
		rc = ERR_OUT_OF_RANGE;
	else {
		w->offset = offset;
		waiter_insert(p, w);
		rc = 0;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* --- flush --- */

static err_t flush_once(partition_t *p);

static void preallocate(partition_t *p)
{
	pthread_mutex_lock(&p->mu);
	log_segment_t *a = active(p);
	int64_t chunk = p->cfg.preallocate_bytes, from = a->alloc;
	if (from + chunk > p->cfg.segment_bytes)
		chunk = p->cfg.segment_bytes - from;
	bool want = p->failed == OK && chunk > 0 && a->alloc - a->size < p->cfg.preallocate_bytes / 2;
	if (want)
		segment_ref(a);
	pthread_mutex_unlock(&p->mu);
	if (!want)
		return;
	err_t rc = p->env.io->fallocate(p->env.io, a->fd, from, chunk);
	pthread_mutex_lock(&p->mu);
	if (rc == OK && a->alloc < from + chunk)
		a->alloc = from + chunk;
	pthread_mutex_unlock(&p->mu);
	if (rc != OK)
		log_debug("partition %s: preallocation skipped (%s)", p->dir, err_str(rc));
	segment_unref(a);
}

/* Zeros ahead (see the notes above): rounds up to this size on average qualify; the window kept ahead. */
#define ZERO_ROUND_BYTES_MAX (32 * 1024)
#define ZERO_AHEAD_BYTES (256 * 1024)
#define ZERO_CHUNK_BYTES (64 * 1024)

static void zero_ahead(partition_t *p)
{
	static const uint8_t zeros[ZERO_CHUNK_BYTES];
	if (p->round_bytes_avg > ZERO_ROUND_BYTES_MAX)
		return;
	pthread_mutex_lock(&p->mu); /* held throughout: an append must not land in what is being zeroed */
	log_segment_t *a = active(p);
	int64_t from = a->zeroed > a->size ? a->zeroed : a->size;
	int64_t to = from + ZERO_AHEAD_BYTES < a->alloc ? from + ZERO_AHEAD_BYTES : a->alloc;
	err_t rc = OK;
	if (p->failed == OK && !a->seal_pending && from - a->size < ZERO_AHEAD_BYTES / 2) {
		for (int64_t pos = from; pos < to && rc == OK; pos += ZERO_CHUNK_BYTES) {
			size_t n = to - pos < ZERO_CHUNK_BYTES ? (size_t)(to - pos) : ZERO_CHUNK_BYTES;
			rc = io_pwrite_all(p->env.io, a->fd, zeros, n, pos);
			if (rc == OK)
				a->zeroed = pos + (int64_t)n;
		}
	}
	pthread_mutex_unlock(&p->mu);
	if (rc != OK) /* past the data: nothing is lost, the extents stay reserved */
		log_debug("partition %s: writing zeros ahead failed (%s)", p->dir, err_str(rc));
}

static err_t sync_segments(partition_t *p, log_segment_t **list, const bool *sealing, size_t n, bool dir_sync)
{
	err_t rc = OK;
	for (size_t i = 0; i < n && rc == OK; i++) {
		log_segment_t *seg = list[i];
		if (sealing[i])
			rc = segment_finish_log(seg);
		else
			rc = p->env.io->fdatasync(p->env.io, seg->fd);
	}
	if (rc == OK && dir_sync)
		rc = p->env.io->fsync_dir(p->env.io, p->dir);
	return rc;
}

err_t partition_flush(partition_t *p)
{
	pthread_mutex_lock(&p->flush_mu); /* one flush of a partition at a time, whichever thread runs it */
	err_t rc = flush_once(p);
	pthread_mutex_unlock(&p->flush_mu);
	return rc;
}

static err_t flush_once(partition_t *p)
{
	pthread_mutex_lock(&p->mu);
	if (p->failed != OK) {
		pthread_mutex_unlock(&p->mu);
		return ERR_FAILED;
	}
	ASSERT(!p->flushing);
	p->flushing = true;
	p->dirty_notified = false;
	log_segment_t *a = active(p);
	int64_t target_end = p->log_end, target_base = a->base, target_pos = a->size;
	bool sync_active = p->cfg.flush_policy != FLUSH_NEVER;
	size_t n = 0;
	bool dir_sync = false;
	/* What to do is decided here, under the lock: a segment may roll (become seal_pending) while this
	 * round runs, and must then wait for the next round to be truncated and fsynced before sealing. */
	log_segment_t **list = malloc((p->nsegs + 1) * sizeof *list);
	bool *sealing = malloc((p->nsegs + 1) * sizeof *sealing);
	ASSERT(list != NULL && sealing != NULL);
	for (size_t i = 0; i < p->nsegs; i++) {
		log_segment_t *seg = p->segs[i];
		if (!seg->dir_synced)
			dir_sync = true;
		if (seg->seal_pending || (seg->unsynced && sync_active)) {
			seg->unsynced = false;
			segment_ref(seg);
			sealing[n] = seg->seal_pending;
			list[n++] = seg;
		}
	}
	pthread_mutex_unlock(&p->mu);

	int64_t t0 = clock_mono_ns(p->env.clock);
	err_t rc = sync_segments(p, list, sealing, n, dir_sync);
	if (rc == OK && n > 0)
		partition_stats_fsync(p->env.stats, clock_mono_ns(p->env.clock) - t0);

	pthread_mutex_lock(&p->mu);
	partition_waiter_t *done = NULL, *failed = NULL;
	bool advanced = false;
	if (rc != OK) {
		failed = fail_locked(p, rc);
	} else {
		if (sync_active && target_end > p->durable_end) {
			int64_t round = target_base == p->durable_seg_base ? target_pos - p->durable_pos : target_pos;
			p->round_bytes_avg += (round - p->round_bytes_avg) / 8;
			advanced = true;
			p->flushes++;
			p->durable_end = target_end;
			p->durable_seg_base = target_base;
			p->durable_pos = target_pos;
		}
		for (size_t i = 0; i < p->nsegs && p->segs[i]->base <= target_base; i++)
			p->segs[i]->dir_synced = true;
		done = take_waiters(p, p->durable_end);
	}
	p->flushing = false;
	int64_t ck_base = p->durable_seg_base, ck_pos = p->durable_pos, ck_off = p->durable_end;
	bool ckpt_due = rc == OK && ck_off > p->ckpt.offset &&
			now_mono_ms(p) - p->ckpt_last_ms >= p->cfg.checkpoint_interval_ms;
	pthread_mutex_unlock(&p->mu);
	fire_waiters(done, OK);
	fire_waiters(failed, ERR_FAILED);
	if (advanced && p->env.on_data != NULL)
		p->env.on_data(p->env.on_data_arg, p);

	/* Sealing's second half: index files for segments that are now fsynced and truncated. */
	for (size_t i = 0; i < n; i++) {
		log_segment_t *seg = list[i];
		if (rc == OK && sealing[i]) {
			err_t irc = segment_write_index(seg, p->dir);
			if (irc != OK)
				log_warn("partition %s: cannot write the index of segment %s (%s); it will be "
					 "rebuilt on the next start",
					 p->dir, seg->name, err_str(irc));
			pthread_mutex_lock(&p->mu);
			seg->seal_pending = false;
			seg->sealed = true;
			pthread_mutex_unlock(&p->mu);
		}
		segment_unref(seg);
	}
	free(list);
	free(sealing);
	if (ckpt_due) {
		err_t crc = ckpt_write(p, ck_base, ck_pos, ck_off);
		if (crc != OK) {
			partition_fail(p, crc);
			return crc;
		}
	}
	if (rc == OK) {
		preallocate(p);
		zero_ahead(p);
	}
	return rc;
}

/* --- retention --- */

static int64_t arch_end_locked(const partition_t *p)
{
	return p->narch > 0 ? p->arch[p->narch - 1].next : -1;
}

int partition_apply_retention(partition_t *p)
{
	pthread_mutex_lock(&p->mu);
	int64_t now = clock_wall_ms(p->env.clock), total = 0;
	for (size_t i = 0; i < p->nsegs; i++)
		total += p->segs[i]->size;
	const partition_config_t *c = &p->cfg;
	int64_t lr_ms = c->local_retention_ms == -2 ? c->retention_ms : c->local_retention_ms;
	int64_t lr_bytes = c->local_retention_bytes == -2 ? c->retention_bytes : c->local_retention_bytes;
	int64_t archived_to = arch_end_locked(p);
	size_t k = 0;
	while (k + 1 < p->nsegs && p->segs[k]->sealed) {
		log_segment_t *s = p->segs[k];
		bool by_size = c->retention_bytes >= 0 && total - s->size >= c->retention_bytes;
		bool by_age = c->retention_ms >= 0 && s->max_ts >= 0 && now - s->max_ts > c->retention_ms;
		if (!by_size && !by_age) {
			/* Tiered: a segment safe in the archive may leave the disk under the local limits. */
			if (!c->remote_storage || s->next_offset > archived_to)
				break;
			bool local_size = lr_bytes >= 0 && total - s->size >= lr_bytes;
			bool local_age = lr_ms >= 0 && s->max_ts >= 0 && now - s->max_ts > lr_ms;
			if (!local_size && !local_age)
				break;
		}
		total -= s->size;
		k++;
	}
	log_segment_t **gone = NULL;
	if (k > 0) {
		gone = malloc(k * sizeof *gone);
		ASSERT(gone != NULL);
		memcpy(gone, p->segs, k * sizeof *gone);
		memmove(p->segs, p->segs + k, (p->nsegs - k) * sizeof *p->segs);
		p->nsegs -= k;
	}
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < k; i++) {
		log_info("partition %s: retention deletes segment %s (offsets %" PRId64 "..%" PRId64 ")%s", p->dir,
			 gone[i]->name, gone[i]->base, gone[i]->next_offset - 1,
			 gone[i]->next_offset <= archived_to ? "; it stays in the archive" : "");
		gone[i]->deleted = true;
		segment_unref(gone[i]);
	}
	free(gone);
	return (int)k;
}

/* --- reads --- */

/* The archived segment holding offset, or NULL (under mu). */
static const archived_seg_t *arch_find(const partition_t *p, int64_t offset)
{
	size_t lo = 0, hi = p->narch;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->arch[mid].base <= offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0 || offset >= p->arch[lo - 1].next)
		return NULL;
	return &p->arch[lo - 1];
}

/* An archived segment, opened and indexed, with a reference for the caller (no partition lock held). */
static err_t arch_segment(partition_t *p, const archived_seg_t *a, archive_fetch_fn fetch,
			  archive_release_fn release, void *arg, bool nowait, log_segment_t **out)
{
	const size_t nslots = sizeof p->arch_open / sizeof p->arch_open[0];
	pthread_mutex_lock(&p->arch_mu);
	for (size_t i = 0; i < nslots; i++)
		if (p->arch_open[i] != NULL && p->arch_open[i]->base == a->base) {
			segment_ref(p->arch_open[i]);
			*out = p->arch_open[i];
			pthread_mutex_unlock(&p->arch_mu);
			return OK;
		}
	pthread_mutex_unlock(&p->arch_mu);
	char dir[PATH_MAX];
	err_t rc = fetch(arg, a, nowait, dir, sizeof dir);
	if (rc != OK)
		return rc;
	log_segment_t *seg;
	bool sealed_ok;
	rc = segment_open(p->env.io, dir, a->base, &seg, &sealed_ok);
	if (rc != OK) {
		release(arg, a->base);
		return rc;
	}
	seg->on_free = release; /* its last unref ends the fetch's use of the files */
	seg->on_free_arg = arg;
	if (!sealed_ok || seg->next_offset != a->next)
		rc = ERR_CORRUPT;
	if (rc == OK)
		rc = segment_load_index(seg, p->cfg.index_interval_bytes);
	if (rc != OK) {
		log_error("partition %s: archived segment %s in %s is unreadable: %s", p->dir, seg->name, dir,
			  err_str(rc));
		segment_unref(seg);
		return rc;
	}
	pthread_mutex_lock(&p->arch_mu);
	for (size_t i = 0; i < nslots; i++)
		if (p->arch_open[i] != NULL && p->arch_open[i]->base == a->base) { /* another reader won */
			segment_unref(seg);
			seg = p->arch_open[i];
			segment_ref(seg);
			*out = seg;
			pthread_mutex_unlock(&p->arch_mu);
			return OK;
		}
	size_t slot = (size_t)p->arch_next_slot;
	p->arch_next_slot = (int)((slot + 1) % nslots);
	if (p->arch_open[slot] != NULL)
		segment_unref(p->arch_open[slot]);
	p->arch_open[slot] = seg; /* the cache's reference */
	segment_ref(seg);          /* the caller's */
	pthread_mutex_unlock(&p->arch_mu);
	*out = seg;
	return OK;
}

/* Whole batches of seg from the one holding offset, up to max_bytes and below limit. Takes over the
 * caller's reference to seg (kept in out on success). `lock`: the segment is the partition's own (its
 * index may grow), so index lookups take mu. */
static err_t read_range(partition_t *p, log_segment_t *seg, int64_t start, int64_t offset, int64_t max_bytes,
			int64_t limit, bool lock, log_range_t *out)
{
	int64_t pos, base, end, next, jpos, jbase;
	err_t rc = segment_seek(seg, start, offset, limit, &pos, &base);
	if (rc == OK) {
		end = pos;
		next = base;
		rc = segment_extend(seg, &end, &next, pos + max_bytes, limit, true);
	}
	if (rc == OK) {
		if (lock)
			pthread_mutex_lock(&p->mu);
		bool jump = segment_index_jump(seg, end, pos + max_bytes, limit, &jpos, &jbase);
		if (lock)
			pthread_mutex_unlock(&p->mu);
		if (jump) {
			end = jpos;
			next = jbase;
		}
		rc = segment_extend(seg, &end, &next, pos + max_bytes, limit, false);
	}
	if (rc != OK) {
		if (rc == ERR_CORRUPT)
			log_error("partition %s: unreadable batch headers in segment %s", p->dir, seg->name);
		segment_unref(seg);
		return rc;
	}
	out->seg = seg;
	out->fd = seg->fd;
	out->pos = pos;
	out->len = end - pos;
	out->first_offset = base;
	out->next_offset = next;
	return OK;
}

static err_t read_at(partition_t *p, int64_t offset, int64_t max_bytes, bool nowait, log_range_t *out)
{
	memset(out, 0, sizeof *out);
	out->fd = -1;
	pthread_mutex_lock(&p->mu);
	err_t rc = OK;
	if (p->failed == OK && offset < p->segs[0]->base && p->arch_fetch != NULL) {
		const archived_seg_t *found = arch_find(p, offset);
		if (found != NULL) {
			archived_seg_t a = *found;
			archive_fetch_fn fetch = p->arch_fetch;
			archive_release_fn release = p->arch_release;
			void *arg = p->arch_arg;
			pthread_mutex_unlock(&p->mu);
			log_segment_t *seg;
			rc = arch_segment(p, &a, fetch, release, arg, nowait, &seg);
			if (rc != OK) {
				out->first_offset = out->next_offset = offset;
				return rc;
			}
			return read_range(p, seg, segment_index_floor(seg, offset), offset, max_bytes, seg->size, false,
					  out);
		}
	}
	if (p->failed != OK)
		rc = ERR_FAILED;
	else if (offset < p->segs[0]->base || offset > p->log_end)
		rc = ERR_OUT_OF_RANGE;
	if (rc != OK || offset >= hwm(p)) {
		out->first_offset = out->next_offset = offset;
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	log_segment_t *seg = p->segs[seg_for_offset(p, offset)];
	rc = segment_load_index(seg, p->cfg.index_interval_bytes);
	int64_t limit = read_limit(p, seg), start = 0;
	if (rc == OK) {
		start = segment_index_floor(seg, offset);
		segment_ref(seg);
	}
	pthread_mutex_unlock(&p->mu);
	if (rc != OK)
		return rc;
	return read_range(p, seg, start, offset, max_bytes, limit, true, out);
}

err_t partition_read(partition_t *p, int64_t offset, int64_t max_bytes, log_range_t *out)
{
	return read_at(p, offset, max_bytes, false, out);
}

err_t partition_read_nowait(partition_t *p, int64_t offset, int64_t max_bytes, log_range_t *out)
{
	return read_at(p, offset, max_bytes, true, out);
}

void log_range_release(log_range_t *r)
{
	if (r->seg != NULL)
		segment_unref(r->seg);
	r->seg = NULL;
	r->fd = -1;
}

err_t log_range_copy(const log_range_t *r, io_t *io, void *buf)
{
	if (r->len == 0)
		return OK;
	return io_pread_all(io, r->fd, buf, (size_t)r->len, r->pos);
}

static err_t offset_for_time(partition_t *p, int64_t ts, bool nowait, int64_t *offset, int64_t *found_ts)
{
	pthread_mutex_lock(&p->mu);
	err_t rc = p->failed != OK ? ERR_FAILED : ERR_NOT_FOUND;
	/* The archive first: the archived segments below the local ones, in order. */
	for (size_t i = 0; rc == ERR_NOT_FOUND && p->arch_fetch != NULL && i < p->narch; i++) {
		archived_seg_t a = p->arch[i];
		if (a.base >= p->segs[0]->base)
			break;
		if (a.max_ts < ts)
			continue;
		archive_fetch_fn fetch = p->arch_fetch;
		archive_release_fn release = p->arch_release;
		void *arg = p->arch_arg;
		pthread_mutex_unlock(&p->mu);
		log_segment_t *seg;
		rc = arch_segment(p, &a, fetch, release, arg, nowait, &seg);
		if (rc == OK) {
			rc = segment_find_time(seg, ts, seg->size, offset, found_ts);
			segment_unref(seg);
		}
		pthread_mutex_lock(&p->mu);
	}
	for (size_t i = 0; i < p->nsegs && rc == ERR_NOT_FOUND; i++) {
		log_segment_t *seg = p->segs[i];
		if (seg->max_ts < ts)
			continue;
		rc = segment_load_index(seg, p->cfg.index_interval_bytes);
		if (rc == OK)
			rc = segment_find_time(seg, ts, read_limit(p, seg), offset, found_ts);
	}
	pthread_mutex_unlock(&p->mu);
	if (rc == ERR_NOT_FOUND) {
		*offset = -1;
		*found_ts = -1;
		rc = OK;
	}
	return rc;
}

err_t partition_offset_for_time(partition_t *p, int64_t ts, int64_t *offset, int64_t *found_ts)
{
	return offset_for_time(p, ts, false, offset, found_ts);
}

err_t partition_offset_for_time_nowait(partition_t *p, int64_t ts, int64_t *offset, int64_t *found_ts)
{
	return offset_for_time(p, ts, true, offset, found_ts);
}

void partition_set_archive(partition_t *p, const archived_seg_t *segs, size_t n, archive_fetch_fn fetch,
			   archive_release_fn release, void *arg)
{
	archived_seg_t *copy = NULL;
	if (n > 0) {
		copy = malloc(n * sizeof *copy);
		ASSERT(copy != NULL);
		memcpy(copy, segs, n * sizeof *copy);
	}
	pthread_mutex_lock(&p->mu);
	free(p->arch);
	p->arch = copy;
	p->narch = n;
	p->arch_fetch = n > 0 ? fetch : NULL;
	p->arch_release = release;
	p->arch_arg = arg;
	pthread_mutex_unlock(&p->mu);
	/* Opened archived segments the new list dropped or describes differently are closed (readers holding
	 * a range keep their own reference). */
	pthread_mutex_lock(&p->arch_mu);
	for (size_t i = 0; i < sizeof p->arch_open / sizeof p->arch_open[0]; i++) {
		log_segment_t *seg = p->arch_open[i];
		bool keep = false;
		for (size_t k = 0; seg != NULL && k < n && !keep; k++)
			keep = segs[k].base == seg->base && segs[k].next == seg->next_offset;
		if (seg != NULL && !keep) {
			segment_unref(seg);
			p->arch_open[i] = NULL;
		}
	}
	pthread_mutex_unlock(&p->arch_mu);
}

int64_t partition_archived_end(partition_t *p)
{
	pthread_mutex_lock(&p->mu);
	int64_t e = arch_end_locked(p);
	pthread_mutex_unlock(&p->mu);
	return e;
}

size_t partition_sealed_segments(partition_t *p, int64_t from, archived_seg_t **out)
{
	pthread_mutex_lock(&p->mu);
	archived_seg_t *v = malloc((p->nsegs + 1) * sizeof *v);
	ASSERT(v != NULL);
	size_t n = 0;
	for (size_t i = 0; i < p->nsegs; i++) {
		log_segment_t *seg = p->segs[i];
		if (!seg->sealed || seg->seal_pending || seg->next_offset <= from)
			continue;
		v[n++] = (archived_seg_t){ seg->base, seg->next_offset, seg->size, seg->max_ts };
	}
	pthread_mutex_unlock(&p->mu);
	*out = v;
	return n;
}

void partition_info(partition_t *p, partition_info_t *info)
{
	pthread_mutex_lock(&p->mu);
	info->log_start = info->local_log_start = p->segs[0]->base;
	info->archived_segments = (int64_t)p->narch;
	info->archived_start = p->narch > 0 ? p->arch[0].base : -1;
	info->archived_end = p->narch > 0 ? p->arch[p->narch - 1].next : -1;
	if (p->arch_fetch != NULL && p->narch > 0 && p->arch[0].base < info->log_start &&
	    p->arch[p->narch - 1].next >= info->log_start)
		info->log_start = p->arch[0].base; /* the archive continues the log below the local segments */
	info->log_end = p->log_end;
	info->hwm = hwm(p);
	info->durable_end = p->durable_end;
	info->size_bytes = 0;
	for (size_t i = 0; i < p->nsegs; i++)
		info->size_bytes += p->segs[i]->size;
	info->segments = (int)p->nsegs;
	info->flushes = p->flushes;
	info->failed = p->failed;
	pthread_mutex_unlock(&p->mu);
}

void partition_set_config(partition_t *p, const partition_config_t *cfg)
{
	pthread_mutex_lock(&p->mu);
	p->cfg = *cfg;
	pthread_mutex_unlock(&p->mu);
}

const char *partition_dir(const partition_t *p)
{
	return p->dir;
}

/* --- close --- */

static void close_impl(partition_t *p, bool discard)
{
	err_t rc = discard ? ERR_CLOSED : partition_flush(p);
	pthread_mutex_lock(&p->mu);
	log_segment_t *a = active(p);
	if (rc == OK && p->failed == OK) {
		/* Seal the active segment: a clean shutdown reopens without scanning. */
		segment_close_index(a);
		rc = segment_finish_log(a);
		if (rc == OK)
			rc = segment_write_index(a, p->dir);
		if (rc == OK)
			rc = ckpt_write(p, a->base, a->size, p->log_end);
		if (rc != OK)
			log_warn("partition %s: clean shutdown incomplete (%s); the next start scans the tail",
				 p->dir, err_str(rc));
	}
	partition_waiter_t *w = take_waiters(p, INT64_MAX);
	pthread_mutex_unlock(&p->mu);
	fire_waiters(w, p->failed != OK ? ERR_FAILED : ERR_CLOSED);
	for (size_t i = 0; i < p->nsegs; i++)
		segment_unref(p->segs[i]);
	if (p->ckpt_fd >= 0)
		p->env.io->close(p->env.io, p->ckpt_fd);
	prod_free(&p->producers);
	for (size_t i = 0; i < sizeof p->arch_open / sizeof p->arch_open[0]; i++)
		if (p->arch_open[i] != NULL)
			segment_unref(p->arch_open[i]);
	free(p->arch);
	pthread_mutex_destroy(&p->arch_mu);
	free(p->segs);
	free(p->dir);
	pthread_mutex_destroy(&p->flush_mu);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

void partition_close(partition_t *p)
{
	if (p != NULL)
		close_impl(p, false);
}

void partition_discard(partition_t *p)
{
	if (p != NULL)
		close_impl(p, true);
}
