/* archiver.c -- copies sealed segments to the archive and serves partitions' reads below local retention.
 * See archiver.h. */
#include "storage/archiver.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/thread.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "storage/partition.h"

#define MANIFEST_MAGIC "factlog-archive-manifest 1\n"

/* One partition's archive state. Owned by the archiver; partitions borrow it as their fetch argument. */
typedef struct apart {
	struct apart *next;
	archiver_t *ar;
	char topic[TOPIC_NAME_MAX + 1];
	int64_t created_ms;
	int32_t partition;
	char prefix[TOPIC_NAME_MAX + 48]; /* TOPIC-CREATEDMS/PARTITION */
	pthread_mutex_t mu;               /* guards segs (read by archiver_partition_info) */
	archived_seg_t *segs;
	size_t n;
	bool loaded;  /* the manifest was read (or found absent) */
	bool failing; /* the last upload failed: logged once until it works again */
} apart_t;

/* A segment a get thread downloads for a reader that does not wait (partition_read_nowait). */
enum { GET_QUEUED, GET_RUNNING, GET_DONE, GET_FAILED };
typedef struct {
	apart_t *ap;
	archived_seg_t seg;
	int state;
	err_t err;       /* GET_FAILED: why */
	int64_t done_ms; /* GET_DONE, GET_FAILED: when (monotonic) */
} aget_t;
#define GETS_MAX 64
/* Get threads: downloads of different segments (a replay reads every partition at once) run in parallel,
 * so one slow object does not hold the others. */
#define GET_THREADS 4
/* A finished download stays pinned in the cache until a reader takes it (else a cache over its limit
 * evicted it before the reader came back, and the two went round for ever), or this long. */
#define GET_KEEP_MS 10000
/* A failed download's error is what every reader of that segment gets for this long; then one tries again
 * (a reader retrying at once made back-to-back requests to a failing store, and the error never reached
 * a client: the fetch's second read of the partition found nothing and asked again). */
#define GET_FAILED_KEEP_MS 5000

struct archiver {
	storage_t *st;
	meta_t *meta;
	archive_t *archive;
	pthread_mutex_t pass_mu; /* one pass at a time (the thread's, or archiver_pass from a test) */
	bool deletion_failing;   /* the last deletion of a deleted topic's archive failed: logged once */
	int64_t check_ms;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu; /* guards parts (the list) and stopping */
	pthread_cond_t cond;
	bool stopping;
	bool wake;               /* archiver_wake: a pass now */
	apart_t *parts;
	/* the get threads (get_main) and their requests, under get_mu */
	pthread_t get_threads[GET_THREADS];
	int nget_threads;
	atomic_bool get_started; /* some get thread runs; read by readers without get_mu */
	bool get_stopping;
	pthread_mutex_t get_mu;
	pthread_cond_t get_cond;
	aget_t gets[GETS_MAX];
	int ngets;
};

static apart_t *part_get(archiver_t *ar, const char *topic, int64_t created_ms, int32_t partition)
{
	pthread_mutex_lock(&ar->mu);
	apart_t *ap = ar->parts;
	while (ap != NULL && !(ap->partition == partition && ap->created_ms == created_ms && !strcmp(ap->topic, topic)))
		ap = ap->next;
	if (ap == NULL) {
		ap = calloc(1, sizeof *ap);
		ASSERT(ap != NULL);
		ap->ar = ar;
		snprintf(ap->topic, sizeof ap->topic, "%s", topic);
		ap->created_ms = created_ms;
		ap->partition = partition;
		char tp[TOPIC_NAME_MAX + 32];
		archiver_topic_prefix(topic, created_ms, tp, sizeof tp);
		snprintf(ap->prefix, sizeof ap->prefix, "%s/%" PRId32, tp, partition);
		pthread_mutex_init(&ap->mu, NULL);
		ap->next = ar->parts;
		ar->parts = ap;
	}
	pthread_mutex_unlock(&ar->mu);
	return ap;
}

void archiver_topic_prefix(const char *topic, int64_t created_ms, char *out, size_t cap)
{
	snprintf(out, cap, "%s-%" PRId64, topic, created_ms);
}

/* The names of a segment's three files. */
static void segment_names(int64_t base, char names[3][40], const char *np[3])
{
	static const char *const exts[] = { ".log", ".index", ".timeindex" };
	for (int i = 0; i < 3; i++) {
		snprintf(names[i], sizeof names[i], "%020" PRId64 "%s", base, exts[i]);
		np[i] = names[i];
	}
}

static int64_t mono_ms(void)
{
	return clock_mono_ns(clock_system()) / 1000000;
}

/* Ends a finished download's hold on its files (get_mu held: the archive's lock nests inside it). */
static void get_unpin(archiver_t *ar, const aget_t *g)
{
	char names[3][40];
	const char *np[3];
	segment_names(g->seg.base, names, np);
	archive_local_done(ar->archive, g->ap->prefix, np, 3);
}

/* Drops finished entries nobody came for in time (get_mu held). */
static void get_expire(archiver_t *ar, int64_t now)
{
	int i = 0;
	while (i < ar->ngets) {
		aget_t *g = &ar->gets[i];
		if ((g->state == GET_DONE && now - g->done_ms > GET_KEEP_MS) ||
		    (g->state == GET_FAILED && now - g->done_ms > GET_FAILED_KEEP_MS)) {
			if (g->state == GET_DONE)
				get_unpin(ar, g);
			ar->gets[i] = ar->gets[--ar->ngets];
			continue;
		}
		i++;
	}
}

/* A reader that does not wait asks for a segment: OK when a download for it finished (*held: the files
 * are pinned for the caller, who must archive_local_done them once it pinned them itself), ERR_AGAIN while
 * it is queued or downloading (or not asked for yet: now it is, with `enqueue`), or the error of a download
 * that failed (for GET_FAILED_KEEP_MS: then the next request tries again). */
static err_t get_request(apart_t *ap, const archived_seg_t *seg, bool enqueue, bool *held)
{
	archiver_t *ar = ap->ar;
	err_t rc = ERR_AGAIN;
	*held = false;
	pthread_mutex_lock(&ar->get_mu);
	get_expire(ar, mono_ms());
	int i = 0;
	while (i < ar->ngets && !(ar->gets[i].ap == ap && ar->gets[i].seg.base == seg->base))
		i++;
	if (i < ar->ngets && ar->gets[i].state == GET_DONE) {
		rc = OK;
		*held = true;
		ar->gets[i] = ar->gets[--ar->ngets];
	} else if (i < ar->ngets && ar->gets[i].state == GET_FAILED) {
		rc = ar->gets[i].err; /* kept: every reader gets it until it expires */
	} else if (enqueue && i == ar->ngets && ar->ngets < GETS_MAX) {
		ar->gets[ar->ngets++] = (aget_t){ .ap = ap, .seg = *seg, .state = GET_QUEUED };
		pthread_cond_signal(&ar->get_cond);
	} /* else queued or running already, or no room: a later request asks again */
	pthread_mutex_unlock(&ar->get_mu);
	return rc;
}

/* A segment the manifest lists but the store does not have is lost data, not "no such record": read as
 * ERR_NOT_FOUND it would look like a segment with nothing at the offset or time asked, and the reader
 * would go on to later ones. A cancelled request (the storage closes) is not worth an error line. */
static err_t fetch_error(err_t rc, const archive_t *a, const char *name, const char *prefix)
{
	if (rc == ERR_NOT_FOUND) {
		log_error("archive: segment %s of %s is listed in its manifest but missing from %s", name, prefix,
			  archive_describe(a));
		return ERR_CORRUPT;
	}
	if (rc != ERR_SYS(ECANCELED))
		log_error("archive: cannot fetch segment %s of %s: %s", name, prefix, err_str(rc));
	return rc;
}

/* A get thread: downloads requested segments into the archive's cache, one at a time, and tells the
 * storage's readers (data hooks) after each. GET_THREADS of them take the queued requests in turn. */
static void *get_main(void *arg)
{
	archiver_t *ar = arg;
	fl_thread_name("fl-archive-get");
	pthread_mutex_lock(&ar->get_mu);
	for (;;) {
		int i = 0;
		while (i < ar->ngets && ar->gets[i].state != GET_QUEUED)
			i++;
		if (ar->get_stopping)
			break;
		if (i == ar->ngets) { /* nothing queued: expire what nobody came for, at least once a second */
			get_expire(ar, mono_ms());
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&ar->get_cond, &ar->get_mu, &ts);
			continue;
		}
		aget_t g = ar->gets[i];
		ar->gets[i].state = GET_RUNNING;
		pthread_mutex_unlock(&ar->get_mu);
		char names[3][40], dir[PATH_MAX];
		const char *np[3];
		segment_names(g.seg.base, names, np);
		err_t rc = archive_local_dir(ar->archive, g.ap->prefix, np, 3, dir, sizeof dir); /* pinned on OK */
		if (rc != OK)
			rc = fetch_error(rc, ar->archive, names[0], g.ap->prefix);
		pthread_mutex_lock(&ar->get_mu);
		for (i = 0; i < ar->ngets; i++) {
			aget_t *e = &ar->gets[i];
			if (e->ap != g.ap || e->seg.base != g.seg.base)
				continue;
			e->state = rc == OK ? GET_DONE : GET_FAILED;
			e->err = rc;
			e->done_ms = mono_ms();
			break;
		}
		pthread_mutex_unlock(&ar->get_mu);
		storage_notify_data(ar->st); /* the parked reader asks again: it finds the files, or the error */
		pthread_mutex_lock(&ar->get_mu);
	}
	pthread_mutex_unlock(&ar->get_mu);
	return NULL;
}

/* The partition's read path: a local directory with the segment's files (in use until release_segment).
 * A reader that does not wait gets ERR_AGAIN while a get thread downloads them. */
static err_t fetch_segment(void *arg, const archived_seg_t *seg, bool nowait, char *dir, size_t cap)
{
	apart_t *ap = arg;
	char names[3][40];
	const char *np[3];
	segment_names(seg->base, names, np);
	bool held = false;
	if (nowait && atomic_load(&ap->ar->get_started)) {
		bool pinned = archive_local_try(ap->ar->archive, ap->prefix, np, 3, dir, cap);
		err_t g = get_request(ap, seg, !pinned, &held); /* a finished download is taken in any case */
		if (pinned) {
			if (held) /* ours holds the files: the download's pin goes */
				archive_local_done(ap->ar->archive, ap->prefix, np, 3);
			return OK;
		}
		if (!held)
			return g; /* being downloaded, or the download's error */
	}
	err_t rc = archive_local_dir(ap->ar->archive, ap->prefix, np, 3, dir, cap); /* held: pinned, no download */
	if (held) /* the download's pin goes once ours holds the files */
		archive_local_done(ap->ar->archive, ap->prefix, np, 3);
	if (rc != OK)
		rc = fetch_error(rc, ap->ar->archive, names[0], ap->prefix);
	return rc;
}

static void release_segment(void *arg, int64_t base)
{
	apart_t *ap = arg;
	char names[3][40];
	const char *np[3];
	segment_names(base, names, np);
	archive_local_done(ap->ar->archive, ap->prefix, np, 3);
}

err_t archive_manifest_parse(const uint8_t *data, size_t len, archived_seg_t **out, size_t *n)
{
	const buf_t bb = { .data = (uint8_t *)(uintptr_t)data, .len = len, .cap = len };
	const buf_t *b = &bb;
	*out = NULL;
	*n = 0;
	size_t ml = strlen(MANIFEST_MAGIC);
	if (b->len < ml || memcmp(b->data, MANIFEST_MAGIC, ml) != 0)
		return ERR_MALFORMED;
	char *text = strndup((const char *)b->data + ml, b->len - ml);
	ASSERT(text != NULL);
	size_t cap = 0;
	archived_seg_t *v = NULL;
	err_t rc = OK;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		archived_seg_t s;
		char extra;
		if (sscanf(line, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %c", &s.base, &s.next, &s.size,
			   &s.max_ts, &extra) != 4 ||
		    s.base < 0 || s.next <= s.base || s.size <= 0 || (*n > 0 && v[*n - 1].next != s.base)) {
			rc = ERR_MALFORMED;
			break;
		}
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			v = realloc(v, cap * sizeof *v);
			ASSERT(v != NULL);
		}
		v[(*n)++] = s;
	}
	free(text);
	if (rc != OK) {
		free(v);
		*n = 0;
		return rc;
	}
	*out = v;
	return OK;
}

static err_t manifest_write(apart_t *ap, const archived_seg_t *segs, size_t n)
{
	buf_t b = { 0 };
	buf_append(&b, MANIFEST_MAGIC, strlen(MANIFEST_MAGIC));
	for (size_t i = 0; i < n; i++) {
		char line[128];
		int k = snprintf(line, sizeof line, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 "\n", segs[i].base,
				 segs[i].next, segs[i].size, segs[i].max_ts);
		buf_append(&b, line, (size_t)k);
	}
	char key[sizeof ap->prefix + 16];
	snprintf(key, sizeof key, "%s/manifest", ap->prefix);
	err_t rc = archive_put_bytes(ap->ar->archive, key, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* Replaces the list (ap->segs takes `segs`) and tells the partition. */
static void publish(apart_t *ap, partition_t *p, archived_seg_t *segs, size_t n)
{
	pthread_mutex_lock(&ap->mu);
	free(ap->segs);
	ap->segs = segs;
	ap->n = n;
	pthread_mutex_unlock(&ap->mu);
	partition_set_archive(p, segs, n, fetch_segment, release_segment, ap);
}

static err_t load_manifest(apart_t *ap, partition_t *p)
{
	buf_t b = { 0 };
	char key[sizeof ap->prefix + 16];
	snprintf(key, sizeof key, "%s/manifest", ap->prefix);
	err_t rc = archive_get_bytes(ap->ar->archive, key, &b);
	archived_seg_t *segs = NULL;
	size_t n = 0;
	if (rc == OK)
		rc = archive_manifest_parse(b.data, b.len, &segs, &n);
	buf_free(&b);
	if (rc == ERR_NOT_FOUND)
		rc = OK;
	if (rc != OK) {
		if (rc != ERR_SYS(ECANCELED))
			log_error("archive: cannot load the manifest of %s from %s: %s", ap->prefix,
				  archive_describe(ap->ar->archive), err_str(rc));
		return rc;
	}
	ap->loaded = true;
	publish(ap, p, segs, n);
	if (n > 0)
		log_info("archive: %s has %zu archived segment(s), offsets %" PRId64 "..%" PRId64, ap->prefix, n,
			 segs[0].base, segs[n - 1].next - 1);
	return OK;
}

static err_t upload_segment(apart_t *ap, partition_t *p, const archived_seg_t *s)
{
	static const char *const exts[] = { ".timeindex", ".index", ".log" };
	err_t rc = OK;
	for (int i = 0; i < 3 && rc == OK; i++) {
		char path[PATH_MAX], key[sizeof ap->prefix + 48];
		snprintf(path, sizeof path, "%s/%020" PRId64 "%s", partition_dir(p), s->base, exts[i]);
		snprintf(key, sizeof key, "%s/%020" PRId64 "%s", ap->prefix, s->base, exts[i]);
		rc = archive_put_file(ap->ar->archive, key, path);
	}
	return rc;
}

static void delete_segment(apart_t *ap, const archived_seg_t *s)
{
	static const char *const exts[] = { ".log", ".index", ".timeindex" };
	for (int i = 0; i < 3; i++) {
		char key[sizeof ap->prefix + 48];
		snprintf(key, sizeof key, "%s/%020" PRId64 "%s", ap->prefix, s->base, exts[i]);
		err_t rc = archive_delete(ap->ar->archive, key);
		if (rc != OK)
			log_warn("archive: cannot delete %s: %s", key, err_str(rc));
	}
}

/* One partition: archive what is sealed and new, then apply the total retention to the archive. */
static void archive_partition(archiver_t *ar, topic_t *t, int32_t idx, const partition_config_t *cfg)
{
	partition_t *p = topic_partition(t, idx, NULL);
	if (p == NULL)
		return;
	apart_t *ap = part_get(ar, topic_name(t), topic_created_ms(t), idx);
	if (!ap->loaded && load_manifest(ap, p) != OK)
		return;
	pthread_mutex_lock(&ap->mu);
	size_t n = ap->n;
	archived_seg_t *segs = malloc((n + 1) * sizeof *segs);
	ASSERT(segs != NULL);
	if (n > 0)
		memcpy(segs, ap->segs, n * sizeof *segs);
	pthread_mutex_unlock(&ap->mu);
	bool changed = false;

	archived_seg_t *sealed;
	size_t ns = partition_sealed_segments(p, n > 0 ? segs[n - 1].next : -1, &sealed);
	for (size_t i = 0; i < ns; i++) {
		if (n > 0 && sealed[i].base != segs[n - 1].next) {
			log_warn("archive: %s: segment at %" PRId64 " does not follow the archive's end %" PRId64
				 "; not archived",
				 ap->prefix, sealed[i].base, segs[n - 1].next);
			break;
		}
		err_t rc = upload_segment(ap, p, &sealed[i]);
		if (rc == ERR_SYS(ECANCELED)) /* the storage closes: the next run copies it */
			break;
		if (rc != OK) {
			if (!ap->failing)
				log_error("archive: cannot copy segment %020" PRId64 " of %s to %s: %s (retrying)",
					  sealed[i].base, ap->prefix, archive_describe(ar->archive), err_str(rc));
			ap->failing = true;
			break;
		}
		ap->failing = false;
		segs = realloc(segs, (n + 1) * sizeof *segs);
		ASSERT(segs != NULL);
		segs[n++] = sealed[i];
		changed = true;
	}
	free(sealed);

	/* The total retention applies to the archive too: drop from the oldest end. */
	int64_t now = (int64_t)time(NULL) * 1000, total = 0;
	for (size_t i = 0; i < n; i++)
		total += segs[i].size;
	size_t drop = 0;
	while (drop < n) {
		bool by_age = cfg->retention_ms >= 0 && segs[drop].max_ts >= 0 && now - segs[drop].max_ts > cfg->retention_ms;
		bool by_size = cfg->retention_bytes >= 0 && total - segs[drop].size >= cfg->retention_bytes;
		if (!by_age && !by_size)
			break;
		total -= segs[drop].size;
		drop++;
	}
	archived_seg_t *gone = NULL;
	if (drop > 0) {
		gone = malloc(drop * sizeof *gone);
		ASSERT(gone != NULL);
		memcpy(gone, segs, drop * sizeof *gone);
		memmove(segs, segs + drop, (n - drop) * sizeof *segs);
		n -= drop;
		changed = true;
	}
	if (changed) {
		err_t rc = manifest_write(ap, segs, n);
		if (rc != OK) {
			if (rc != ERR_SYS(ECANCELED))
				log_error("archive: cannot write the manifest of %s: %s (retrying)", ap->prefix,
					  err_str(rc));
			free(segs);
			free(gone);
			return; /* the uploaded files are written again next time; nothing refers to them yet */
		}
		publish(ap, p, segs, n);
		segs = NULL;
		for (size_t i = 0; i < drop; i++)
			delete_segment(ap, &gone[i]);
		if (drop > 0)
			log_info("archive: %s: retention removed %zu archived segment(s)", ap->prefix, drop);
	}
	free(segs);
	free(gone);
}

typedef struct {
	char **names;
	size_t n, cap;
} names_t;

static void collect_name(void *arg, const char *name)
{
	names_t *v = arg;
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 16;
		v->names = realloc(v->names, v->cap * sizeof *v->names);
		ASSERT(v->names != NULL);
	}
	v->names[v->n++] = strdup(name);
}

/* Every remote-storage topic: load its manifests (only_load) or archive its partitions. */
static void each_remote_topic(archiver_t *ar, bool only_load)
{
	names_t v = { 0 };
	storage_topic_names(ar->st, collect_name, &v);
	for (size_t i = 0; i < v.n; i++) {
		topic_t *t = archive_cancelled(ar->archive) ? NULL : storage_topic_get(ar->st, v.names[i]);
		free(v.names[i]);
		if (t == NULL) /* gone, or the storage closes: the rest waits for the next run */
			continue;
		partition_config_t cfg;
		topic_config(t, &cfg);
		if (cfg.remote_storage) {
			for (int32_t k = 0; k < topic_partition_count(t); k++) {
				if (only_load) {
					partition_t *p = topic_partition(t, k, NULL);
					apart_t *ap = part_get(ar, topic_name(t), topic_created_ms(t), k);
					if (p != NULL && !ap->loaded)
						load_manifest(ap, p);
				} else {
					archive_partition(ar, t, k, &cfg);
				}
			}
		}
		topic_put(t);
	}
	free(v.names);
}

/* Deletes the archives of deleted topics (recorded with the deletion, so a restart finishes the work). */
static void delete_archives(archiver_t *ar)
{
	names_t v = { 0 };
	if (meta_archive_deletion_list(ar->meta, collect_name, &v) != OK)
		return;
	bool failed = false;
	for (size_t i = 0; i < v.n; i++) {
		size_t deleted = 0;
		err_t rc = archive_delete_prefix(ar->archive, v.names[i], &deleted);
		if (rc == OK)
			rc = meta_archive_deletion_done(ar->meta, v.names[i]);
		if (rc == OK) {
			log_info("archive: deleted %zu object(s) of the deleted topic %s", deleted, v.names[i]);
		} else {
			if (!ar->deletion_failing)
				log_error("archive: cannot delete the objects of the deleted topic %s from %s: %s "
					  "(retrying every pass)",
					  v.names[i], archive_describe(ar->archive), err_str(rc));
			failed = true;
		}
		free(v.names[i]);
	}
	ar->deletion_failing = failed;
	free(v.names);
}

void archiver_pass(archiver_t *ar)
{
	pthread_mutex_lock(&ar->pass_mu);
	each_remote_topic(ar, false);
	delete_archives(ar); /* after: a topic deleted during this pass may have had a segment uploaded in it */
	pthread_mutex_unlock(&ar->pass_mu);
}

void archiver_wake(archiver_t *ar)
{
	if (ar == NULL)
		return;
	pthread_mutex_lock(&ar->mu);
	ar->wake = true;
	pthread_cond_broadcast(&ar->cond);
	pthread_mutex_unlock(&ar->mu);
}

static void *archiver_main(void *arg)
{
	archiver_t *ar = arg;
	fl_thread_name("fl-archiver");
	pthread_mutex_lock(&ar->mu);
	while (!ar->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += ar->check_ms / 1000;
		ts.tv_nsec += (ar->check_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!ar->stopping && !ar->wake && pthread_cond_timedwait(&ar->cond, &ar->mu, &ts) == 0)
			; /* spurious wake-ups wait on */
		ar->wake = false;
		if (ar->stopping)
			break;
		pthread_mutex_unlock(&ar->mu);
		archiver_pass(ar);
		pthread_mutex_lock(&ar->mu);
	}
	pthread_mutex_unlock(&ar->mu);
	return NULL;
}

err_t archiver_start(storage_t *st, meta_t *meta, archive_t *a, int64_t check_ms, archiver_t **out)
{
	archiver_t *ar = calloc(1, sizeof *ar);
	ASSERT(ar != NULL);
	ar->st = st;
	ar->meta = meta;
	pthread_mutex_init(&ar->pass_mu, NULL);
	ar->archive = a;
	ar->check_ms = check_ms > 0 ? check_ms : 10000;
	pthread_mutex_init(&ar->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ar->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&ar->get_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ar->get_cond, &ca);
	pthread_condattr_destroy(&ca);
	each_remote_topic(ar, true);
	err_t rc = -pthread_create(&ar->thread, NULL, archiver_main, ar);
	ar->started = rc == OK;
	if (rc == OK) { /* without it, readers that would not wait wait (fetch_segment) */
		while (ar->nget_threads < GET_THREADS &&
		       pthread_create(&ar->get_threads[ar->nget_threads], NULL, get_main, ar) == 0)
			ar->nget_threads++;
		atomic_store(&ar->get_started, ar->nget_threads > 0);
		if (ar->nget_threads == 0)
			log_warn("archive: no download thread: reads below local retention block their event loop");
	}
	*out = ar;
	return rc;
}

void archiver_cancel(archiver_t *ar)
{
	if (ar != NULL)
		archive_cancel(ar->archive);
}

void archiver_stop(archiver_t *ar)
{
	if (ar == NULL || !ar->started)
		return;
	pthread_mutex_lock(&ar->mu);
	ar->stopping = true;
	pthread_cond_broadcast(&ar->cond);
	pthread_mutex_unlock(&ar->mu);
	/* An upload or download in progress would hold the joins below for up to curl's timeout (10 min). An
	 * upload cut short is made again by the next run's first pass; a reader waiting for a download gets
	 * an error, as the storage closes anyway. */
	archive_cancel(ar->archive);
	pthread_join(ar->thread, NULL);
	ar->started = false;
	if (atomic_load(&ar->get_started)) {
		pthread_mutex_lock(&ar->get_mu);
		ar->get_stopping = true;
		pthread_cond_broadcast(&ar->get_cond);
		pthread_mutex_unlock(&ar->get_mu);
		for (int i = 0; i < ar->nget_threads; i++)
			pthread_join(ar->get_threads[i], NULL); /* a download in progress ends first (cancelled above) */
		ar->nget_threads = 0;
		atomic_store(&ar->get_started, false); /* readers wait for the archive themselves from now on */
		pthread_mutex_lock(&ar->get_mu);
		for (int i = 0; i < ar->ngets; i++)
			if (ar->gets[i].state == GET_DONE)
				get_unpin(ar, &ar->gets[i]);
		ar->ngets = 0;
		pthread_mutex_unlock(&ar->get_mu);
	}
}

void archiver_free(archiver_t *ar)
{
	if (ar == NULL)
		return;
	archiver_stop(ar);
	while (ar->parts != NULL) {
		apart_t *ap = ar->parts;
		ar->parts = ap->next;
		free(ap->segs);
		pthread_mutex_destroy(&ap->mu);
		free(ap);
	}
	archive_close(ar->archive);
	pthread_mutex_destroy(&ar->pass_mu);
	pthread_cond_destroy(&ar->cond);
	pthread_mutex_destroy(&ar->mu);
	pthread_cond_destroy(&ar->get_cond);
	pthread_mutex_destroy(&ar->get_mu);
	free(ar);
}

void archiver_partition_info(archiver_t *ar, const char *topic, int32_t partition, int64_t *segments,
			     int64_t *start, int64_t *end)
{
	*segments = 0;
	*start = *end = -1;
	pthread_mutex_lock(&ar->mu);
	apart_t *found = NULL;
	for (apart_t *ap = ar->parts; ap != NULL; ap = ap->next)
		if (ap->partition == partition && !strcmp(ap->topic, topic) &&
		    (found == NULL || ap->created_ms > found->created_ms))
			found = ap;
	pthread_mutex_unlock(&ar->mu);
	if (found == NULL)
		return;
	pthread_mutex_lock(&found->mu);
	*segments = (int64_t)found->n;
	if (found->n > 0) {
		*start = found->segs[0].base;
		*end = found->segs[found->n - 1].next;
	}
	pthread_mutex_unlock(&found->mu);
}

const char *archiver_describe(const archiver_t *ar)
{
	return archive_describe(ar->archive);
}
