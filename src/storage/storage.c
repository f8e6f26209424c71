/* storage.c -- topics, metadata and the flusher thread. See storage.h. */
#include "storage/storage.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/thread.h"
#include "core/compat.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "storage/archiver.h"
#include "storage/meta.h"
#include "storage/recordbatch.h"

const double storage_fsync_bucket_le[STATS_FSYNC_BUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
								 0.01,   0.025,   0.05,   0.1,   0.5,    1e300 };

/* The partition-side view of storage_stats_t (see partition.h). */
struct partition_stats {
	storage_stats_t s;
};

void partition_stats_append(struct partition_stats *ps, size_t bytes, int32_t records)
{
	if (ps == NULL)
		return;
	atomic_fetch_add_explicit(&ps->s.appends, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&ps->s.append_bytes, bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&ps->s.append_records, (uint64_t)records, memory_order_relaxed);
}

void stats_hist_observe(stats_hist_t *h, int64_t ns)
{
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->ns_sum, (uint64_t)ns, memory_order_relaxed);
	double secs = (double)ns / 1e9;
	for (int i = 0; i < STATS_FSYNC_BUCKETS; i++)
		if (secs <= storage_fsync_bucket_le[i])
			atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed); /* cumulative */
}

void partition_stats_fsync(struct partition_stats *ps, int64_t ns)
{
	if (ps != NULL)
		stats_hist_observe(&ps->s.fsync, ns);
}

struct topic {
	storage_t *st;
	char *name;
	atomic_int refs;
	pthread_mutex_t mu; /* guards parts, errs, n, cfg and kv */
	partition_t **parts;
	err_t *errs;
	int32_t n;
	partition_config_t cfg;
	char **keys, **vals;
	int nkv;
	bool discard; /* deleted: close without sealing, then remove the files */
	int64_t created_ms;
	char *trash_dir;
};

typedef struct {
	topic_t *t;
	partition_t *p;
} flush_item_t;

struct storage {
	storage_opts_t opts;
	char *dir;
	io_t *io;
	const clock_src_t *clock;
	meta_t *meta;
	int lock_fd;
	pthread_mutex_t mu; /* guards topics, the flush queue and stopping */
	pthread_cond_t cond;
	topic_t **topics; /* sorted by name */
	size_t ntopics, captopics;
	flush_item_t *queue;
	size_t nqueue, capqueue;
	bool stopping;
	int nflushers;
	pthread_t flushers[STORAGE_FLUSH_THREADS_MAX];
	int64_t pid_next, pid_limit; /* reserved producer ids, under mu */
	struct {
		void (*fn)(void *arg);
		void *arg;
	} data_hooks[STORAGE_DATA_HOOKS_MAX]; /* set before traffic, read without a lock */
	atomic_int ndata_hooks;
	pthread_mutex_t commit_mu; /* guards commits and commit_waiters */
	struct committed *commits;
	size_t ncommits, capcommits;
	commit_waiter_t *commit_waiters;
	struct partition_stats stats;
	struct archiver *archiver; /* NULL without an archive */
};

struct committed {
	char *group, *topic;
	int32_t partition;
	int64_t offset;
};

void storage_opts_default(storage_opts_t *o, const char *data_dir)
{
	memset(o, 0, sizeof *o);
	o->data_dir = data_dir;
	partition_config_default(&o->defaults);
	o->retention_check_ms = 300000;
	o->archive_check_ms = 10000;
	o->archive_cache_bytes = ARCHIVE_CACHE_BYTES_DEFAULT;
	/* 4, not 2, since 2026-12-06: acks=all at 100 MB/s over 4 partitions, librdkafka's p99 went from 3.4-3.8 ms
	 * to 2.6-2.9 (the fsyncs of more partitions overlap) and throughput did not drop (docs/benchmarks.md) */
	o->flush_threads = 4;
}

err_t storage_parse_flush_policy(const char *s, int *policy, int64_t *interval_ms)
{
	if (strcmp(s, "always") == 0) {
		*policy = FLUSH_ALWAYS;
		return OK;
	}
	if (strcmp(s, "never") == 0) {
		*policy = FLUSH_NEVER;
		return OK;
	}
	if (strncmp(s, "interval:", 9) == 0) {
		char *end;
		long long ms = strtoll(s + 9, &end, 10);
		if (*end == 0 && end != s + 9 && ms > 0 && ms <= 3600000) {
			*policy = FLUSH_INTERVAL;
			*interval_ms = ms;
			return OK;
		}
	}
	return ERR_INVALID;
}

/* --- configs --- */

static bool parse_i64(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != 0 || x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

err_t topic_config_apply(partition_config_t *cfg, const char *key, const char *value, const char **why)
{
	int64_t x;
	*why = NULL;
	if (strcmp(key, "segment.bytes") == 0) {
		if (!parse_i64(value, 1024, INT32_MAX, &x))
			*why = "segment.bytes must be an integer from 1024 to 2147483647";
		else
			cfg->segment_bytes = x;
	} else if (strcmp(key, "segment.ms") == 0) {
		if (!parse_i64(value, 1, INT64_MAX, &x))
			*why = "segment.ms must be a positive integer";
		else
			cfg->segment_ms = x;
	} else if (strcmp(key, "retention.bytes") == 0) {
		if (!parse_i64(value, -1, INT64_MAX, &x))
			*why = "retention.bytes must be an integer >= -1";
		else
			cfg->retention_bytes = x;
	} else if (strcmp(key, "retention.ms") == 0) {
		if (!parse_i64(value, -1, INT64_MAX, &x))
			*why = "retention.ms must be an integer >= -1";
		else
			cfg->retention_ms = x;
	} else if (strcmp(key, "max.message.bytes") == 0) {
		if (!parse_i64(value, RB_HEADER_LEN, INT32_MAX, &x))
			*why = "max.message.bytes must be an integer from 61 to 2147483647";
		else
			cfg->max_message_bytes = (int32_t)x;
	} else if (strcmp(key, "index.interval.bytes") == 0) {
		if (!parse_i64(value, 1, INT32_MAX, &x))
			*why = "index.interval.bytes must be a positive integer";
		else
			cfg->index_interval_bytes = (int32_t)x;
	} else if (strcmp(key, "message.timestamp.type") == 0) {
		if (strcmp(value, "CreateTime") == 0)
			cfg->log_append_time = false;
		else if (strcmp(value, "LogAppendTime") == 0)
			cfg->log_append_time = true;
		else
			*why = "message.timestamp.type must be CreateTime or LogAppendTime";
	} else if (strcmp(key, "remote.storage.enable") == 0) {
		if (strcmp(value, "true") == 0)
			cfg->remote_storage = true;
		else if (strcmp(value, "false") == 0)
			cfg->remote_storage = false;
		else
			*why = "remote.storage.enable must be true or false";
	} else if (strcmp(key, "local.retention.ms") == 0) {
		if (!parse_i64(value, -2, INT64_MAX, &x))
			*why = "local.retention.ms must be an integer >= -2 (-2: as retention.ms)";
		else
			cfg->local_retention_ms = x;
	} else if (strcmp(key, "local.retention.bytes") == 0) {
		if (!parse_i64(value, -2, INT64_MAX, &x))
			*why = "local.retention.bytes must be an integer >= -2 (-2: as retention.bytes)";
		else
			cfg->local_retention_bytes = x;
	} else if (strcmp(key, "cleanup.policy") == 0) {
		if (strcmp(value, "delete") != 0)
			*why = "cleanup.policy: only 'delete' is supported";
	} else {
		*why = "unknown topic config key";
	}
	return *why ? ERR_INVALID : OK;
}

static err_t validate_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > TOPIC_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return ERR_INVALID;
	return topic_chars_legal(name, n) ? OK : ERR_INVALID;
}

/* --- topics --- */

static void topic_kv_set(topic_t *t, const char *key, const char *value)
{
	for (int i = 0; i < t->nkv; i++) {
		if (strcmp(t->keys[i], key) != 0)
			continue;
		free(t->vals[i]);
		if (value != NULL) {
			t->vals[i] = strdup(value);
			return;
		}
		free(t->keys[i]);
		t->keys[i] = t->keys[--t->nkv];
		t->vals[i] = t->vals[t->nkv];
		return;
	}
	if (value == NULL)
		return;
	t->keys = realloc(t->keys, (size_t)(t->nkv + 1) * sizeof *t->keys);
	t->vals = realloc(t->vals, (size_t)(t->nkv + 1) * sizeof *t->vals);
	ASSERT(t->keys != NULL && t->vals != NULL);
	t->keys[t->nkv] = strdup(key);
	t->vals[t->nkv] = strdup(value);
	t->nkv++;
}

/* Recomputes the effective config from the defaults and the explicit settings (t->mu held). */
static void topic_recompute(topic_t *t)
{
	partition_config_t cfg = t->st->opts.defaults;
	for (int i = 0; i < t->nkv; i++) {
		const char *why;
		if (topic_config_apply(&cfg, t->keys[i], t->vals[i], &why) != OK)
			log_warn("topic %s: ignoring stored config %s=%s (%s)", t->name, t->keys[i], t->vals[i], why);
	}
	t->cfg = cfg;
	for (int32_t i = 0; i < t->n; i++)
		if (t->parts[i] != NULL)
			partition_set_config(t->parts[i], &cfg);
}

static void on_dirty(void *arg, partition_t *p)
{
	topic_t *t = arg;
	storage_t *st = t->st;
	atomic_fetch_add(&t->refs, 1);
	pthread_mutex_lock(&st->mu);
	if (st->nqueue == st->capqueue) {
		st->capqueue = st->capqueue ? st->capqueue * 2 : 64;
		st->queue = realloc(st->queue, st->capqueue * sizeof *st->queue);
		ASSERT(st->queue != NULL);
	}
	st->queue[st->nqueue].t = t;
	st->queue[st->nqueue].p = p;
	st->nqueue++;
	/* One flusher is enough for one partition: a broadcast woke every flusher per append burst, and all
	 * but one went back to sleep (two context switches each, for nothing). */
	pthread_cond_signal(&st->cond);
	pthread_mutex_unlock(&st->mu);
}

void storage_notify_data(storage_t *st)
{
	int n = atomic_load(&st->ndata_hooks);
	for (int i = 0; i < n; i++)
		st->data_hooks[i].fn(st->data_hooks[i].arg);
}

static void on_data(void *arg, partition_t *p)
{
	(void)p;
	topic_t *t = arg;
	storage_notify_data(t->st);
}

static struct committed *commit_find(storage_t *st, const char *group, const char *topic, int32_t partition)
{
	for (size_t i = 0; i < st->ncommits; i++) {
		struct committed *c = &st->commits[i];
		if (c->partition == partition && strcmp(c->group, group) == 0 && strcmp(c->topic, topic) == 0)
			return c;
	}
	return NULL;
}

static void commit_set(storage_t *st, const char *group, const char *topic, int32_t partition, int64_t offset)
{
	struct committed *c = commit_find(st, group, topic, partition);
	if (c == NULL) {
		if (st->ncommits == st->capcommits) {
			st->capcommits = st->capcommits ? st->capcommits * 2 : 64;
			st->commits = realloc(st->commits, st->capcommits * sizeof *st->commits);
			ASSERT(st->commits != NULL);
		}
		c = &st->commits[st->ncommits++];
		c->group = strdup(group);
		c->topic = strdup(topic);
		c->partition = partition;
	}
	c->offset = offset;
}

static void load_commit(void *arg, const char *group, const char *topic, int32_t partition, int64_t offset,
			const char *metadata, int64_t commit_ms)
{
	(void)metadata;
	(void)commit_ms;
	commit_set(arg, group, topic, partition, offset);
}

err_t storage_commit_offset(storage_t *st, const char *group, const char *topic, int32_t partition,
			    int64_t offset, const char *metadata)
{
	err_t rc = meta_offset_commit(st->meta, group, topic, partition, offset, metadata,
				      clock_wall_ms(st->clock));
	if (rc != OK)
		return rc;
	pthread_mutex_lock(&st->commit_mu);
	commit_set(st, group, topic, partition, offset);
	commit_waiter_t *done = NULL, **pp = &st->commit_waiters;
	while (*pp) {
		commit_waiter_t *w = *pp;
		if (w->partition == partition && offset > w->offset && strcmp(w->group, group) == 0 &&
		    strcmp(w->topic, topic) == 0) {
			*pp = w->next;
			w->next = done;
			done = w;
		} else {
			pp = &w->next;
		}
	}
	pthread_mutex_unlock(&st->commit_mu);
	while (done) {
		commit_waiter_t *next = done->next;
		done->next = NULL;
		done->cb(done, offset);
		done = next;
	}
	return OK;
}

int64_t storage_committed_offset(storage_t *st, const char *group, const char *topic, int32_t partition)
{
	pthread_mutex_lock(&st->commit_mu);
	struct committed *c = commit_find(st, group, topic, partition);
	int64_t off = c ? c->offset : -1;
	pthread_mutex_unlock(&st->commit_mu);
	return off;
}

int storage_wait_commit(storage_t *st, commit_waiter_t *w)
{
	pthread_mutex_lock(&st->commit_mu);
	struct committed *c = commit_find(st, w->group, w->topic, w->partition);
	int rc = 1;
	if (c == NULL || c->offset <= w->offset) {
		w->next = st->commit_waiters;
		st->commit_waiters = w;
		rc = 0;
	}
	pthread_mutex_unlock(&st->commit_mu);
	return rc;
}

bool storage_cancel_commit_wait(storage_t *st, commit_waiter_t *w)
{
	pthread_mutex_lock(&st->commit_mu);
	bool found = false;
	for (commit_waiter_t **pp = &st->commit_waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			found = true;
			break;
		}
	pthread_mutex_unlock(&st->commit_mu);
	return found;
}

storage_stats_t *storage_stats(storage_t *st)
{
	return &st->stats.s;
}

void storage_commits_each(storage_t *st, storage_commit_fn fn, void *arg)
{
	pthread_mutex_lock(&st->commit_mu);
	for (size_t i = 0; i < st->ncommits; i++)
		fn(arg, st->commits[i].group, st->commits[i].topic, st->commits[i].partition, st->commits[i].offset);
	pthread_mutex_unlock(&st->commit_mu);
}

struct meta *storage_meta(storage_t *st)
{
	return st->meta;
}

err_t storage_add_data_hook(storage_t *st, void (*fn)(void *arg), void *arg)
{
	int n = atomic_load(&st->ndata_hooks);
	if (n == STORAGE_DATA_HOOKS_MAX)
		return ERR_LIMIT;
	st->data_hooks[n].fn = fn;
	st->data_hooks[n].arg = arg;
	atomic_store(&st->ndata_hooks, n + 1); /* published after the entry is complete */
	return OK;
}

err_t storage_next_producer_id(storage_t *st, int64_t *id)
{
	pthread_mutex_lock(&st->mu);
	err_t rc = OK;
	if (st->pid_next >= st->pid_limit) {
		int64_t before;
		rc = meta_counter_add(st->meta, "producer_id", 1000, &before);
		if (rc == OK) {
			st->pid_next = before;
			st->pid_limit = before + 1000;
		}
	}
	if (rc == OK)
		*id = st->pid_next++;
	pthread_mutex_unlock(&st->mu);
	return rc;
}

static err_t topic_path(const storage_t *st, const char *name, int32_t part, char *out, size_t cap)
{
	int n = part < 0 ? snprintf(out, cap, "%s/topics/%s", st->dir, name)
			 : snprintf(out, cap, "%s/topics/%s/%" PRId32, st->dir, name, part);
	return n < (int)cap ? OK : ERR_SYS(ENAMETOOLONG);
}

/* Opens partitions [t->n, total) (t->mu held). */
static err_t topic_open_partitions(topic_t *t, int32_t total)
{
	storage_t *st = t->st;
	char path[PATH_MAX], tdir[PATH_MAX], topics[PATH_MAX];
	err_t rc = topic_path(st, t->name, -1, tdir, sizeof tdir);
	if (rc == OK && snprintf(topics, sizeof topics, "%s/topics", st->dir) >= (int)sizeof topics)
		rc = ERR_SYS(ENAMETOOLONG);
	if (rc == OK) {
		rc = st->io->mkdir(st->io, tdir);
		if (rc == ERR_SYS(EEXIST))
			rc = OK;
		else if (rc == OK) /* the topic directory's own entry must be durable too */
			rc = st->io->fsync_dir(st->io, topics);
	}
	if (rc != OK)
		return rc;
	t->parts = realloc(t->parts, (size_t)total * sizeof *t->parts);
	t->errs = realloc(t->errs, (size_t)total * sizeof *t->errs);
	ASSERT(t->parts != NULL && t->errs != NULL);
	partition_env_t env = { st->io, st->clock, on_dirty, t, on_data, t, &st->stats };
	for (int32_t i = t->n; i < total; i++) {
		t->parts[i] = NULL;
		t->errs[i] = topic_path(st, t->name, i, path, sizeof path);
		if (t->errs[i] == OK)
			t->errs[i] = partition_open(&env, path, &t->cfg, &t->parts[i]);
		if (t->errs[i] != OK)
			log_error("topic %s partition %" PRId32 ": unavailable: %s", t->name, i, err_str(t->errs[i]));
	}
	t->n = total;
	return st->io->fsync_dir(st->io, tdir); /* the partition directories' entries */
}

static topic_t *topic_new(storage_t *st, const char *name)
{
	topic_t *t = calloc(1, sizeof *t);
	ASSERT(t != NULL);
	t->st = st;
	t->name = strdup(name);
	atomic_init(&t->refs, 1);
	pthread_mutex_init(&t->mu, NULL);
	t->cfg = st->opts.defaults;
	return t;
}

void topic_put(topic_t *t)
{
	if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	for (int32_t i = 0; i < t->n; i++) {
		if (t->discard)
			partition_discard(t->parts[i]);
		else
			partition_close(t->parts[i]);
	}
	if (t->trash_dir != NULL) {
		err_t rc = io_remove_tree(t->st->io, t->trash_dir);
		if (rc != OK)
			log_warn("cannot remove %s (%s); it is removed on the next start", t->trash_dir, err_str(rc));
	}
	for (int i = 0; i < t->nkv; i++) {
		free(t->keys[i]);
		free(t->vals[i]);
	}
	free(t->keys);
	free(t->vals);
	free(t->parts);
	free(t->errs);
	free(t->trash_dir);
	free(t->name);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* Binary search in the sorted topic array (st->mu held): index of name, or where it would go. */
static size_t topic_find(const storage_t *st, const char *name, bool *found)
{
	size_t lo = 0, hi = st->ntopics;
	*found = false;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(st->topics[mid]->name, name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void topic_insert(storage_t *st, topic_t *t)
{
	bool found;
	size_t at = topic_find(st, t->name, &found);
	ASSERT(!found);
	if (st->ntopics == st->captopics) {
		st->captopics = st->captopics ? st->captopics * 2 : 16;
		st->topics = realloc(st->topics, st->captopics * sizeof *st->topics);
		ASSERT(st->topics != NULL);
	}
	memmove(st->topics + at + 1, st->topics + at, (st->ntopics - at) * sizeof *st->topics);
	st->topics[at] = t;
	st->ntopics++;
}

topic_t *storage_topic_get(storage_t *st, const char *name)
{
	pthread_mutex_lock(&st->mu);
	bool found;
	size_t at = topic_find(st, name, &found);
	topic_t *t = found ? st->topics[at] : NULL;
	if (t != NULL)
		atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&st->mu);
	return t;
}

const char *topic_name(const topic_t *t)
{
	return t->name;
}

int64_t topic_created_ms(const topic_t *t)
{
	return t->created_ms;
}

int32_t topic_partition_count(topic_t *t)
{
	pthread_mutex_lock(&t->mu);
	int32_t n = t->n;
	pthread_mutex_unlock(&t->mu);
	return n;
}

partition_t *topic_partition(topic_t *t, int32_t idx, err_t *open_err)
{
	pthread_mutex_t *mu = &t->mu;
	pthread_mutex_lock(mu);
	partition_t *p = NULL;
	err_t rc = ERR_NOT_FOUND;
	if (idx >= 0 && idx < t->n) {
		p = t->parts[idx];
		rc = t->errs[idx];
	}
	pthread_mutex_unlock(mu);
	if (open_err != NULL)
		*open_err = rc;
	return p;
}

void topic_config(topic_t *t, partition_config_t *cfg)
{
	pthread_mutex_lock(&t->mu);
	*cfg = t->cfg;
	pthread_mutex_unlock(&t->mu);
}

void topic_config_list(topic_t *t, topic_kv_fn fn, void *arg)
{
	pthread_mutex_lock(&t->mu);
	for (int i = 0; i < t->nkv; i++)
		fn(arg, t->keys[i], t->vals[i]);
	pthread_mutex_unlock(&t->mu);
}

void storage_topic_names(storage_t *st, storage_topic_fn fn, void *arg)
{
	pthread_mutex_lock(&st->mu);
	size_t n = st->ntopics;
	char **names = malloc((n + 1) * sizeof *names);
	ASSERT(names != NULL);
	for (size_t i = 0; i < n; i++)
		names[i] = strdup(st->topics[i]->name);
	pthread_mutex_unlock(&st->mu);
	for (size_t i = 0; i < n; i++) {
		fn(arg, names[i]);
		free(names[i]);
	}
	free(names);
}

static err_t trash_topic_dir(storage_t *st, const char *name, char *to, size_t cap);

err_t storage_topic_create(storage_t *st, const char *name, int32_t partitions, const topic_kv_t *configs,
			   int nconfigs)
{
	if (validate_name(name) != OK) {
		log_warn("create topic '%s': invalid name (use 1-249 of [A-Za-z0-9._-])", name);
		return ERR_INVALID;
	}
	if (partitions < 1 || partitions > TOPIC_PARTITIONS_MAX)
		return ERR_INVALID;
	partition_config_t probe = st->opts.defaults;
	for (int i = 0; i < nconfigs; i++) {
		const char *why;
		if (topic_config_apply(&probe, configs[i].key, configs[i].value, &why) != OK) {
			log_warn("create topic %s: config %s=%s: %s", name, configs[i].key, configs[i].value, why);
			return ERR_INVALID;
		}
	}
	pthread_mutex_lock(&st->mu);
	bool found;
	topic_find(st, name, &found);
	if (found) {
		pthread_mutex_unlock(&st->mu);
		return ERR_EXISTS;
	}
	/* A directory left by an incomplete delete must not come back as this topic's data. */
	char leftover[PATH_MAX];
	err_t trc = trash_topic_dir(st, name, leftover, sizeof leftover);
	if (trc != OK) {
		pthread_mutex_unlock(&st->mu);
		return trc;
	}
	meta_kv_t *kv = malloc((size_t)(nconfigs + 1) * sizeof *kv);
	ASSERT(kv != NULL);
	for (int i = 0; i < nconfigs; i++) {
		kv[i].key = configs[i].key;
		kv[i].value = configs[i].value;
	}
	int64_t created_ms = clock_wall_ms(st->clock);
	char prefix[TOPIC_NAME_MAX + 32];
	for (int i = 0; i < 1000; i++, created_ms++) { /* not the prefix of a predecessor's archive */
		archiver_topic_prefix(name, created_ms, prefix, sizeof prefix);
		if (!meta_archive_deletion_pending(st->meta, prefix))
			break;
	}
	err_t rc = meta_topic_create(st->meta, name, partitions, created_ms, kv, nconfigs);
	free(kv);
	topic_t *t = NULL;
	if (rc == OK) {
		t = topic_new(st, name);
		t->created_ms = created_ms;
		pthread_mutex_lock(&t->mu);
		for (int i = 0; i < nconfigs; i++)
			topic_kv_set(t, configs[i].key, configs[i].value);
		topic_recompute(t);
		rc = topic_open_partitions(t, partitions);
		pthread_mutex_unlock(&t->mu);
		topic_insert(st, t);
	}
	pthread_mutex_unlock(&st->mu);
	if (rc == OK)
		log_info("created topic %s with %" PRId32 " partitions", name, partitions);
	return rc;
}

/* Moves <data>/topics/<name> (if present) into the trash, durably. */
static err_t trash_topic_dir(storage_t *st, const char *name, char *to, size_t cap)
{
	char from[PATH_MAX], topics[PATH_MAX], trash[PATH_MAX];
	err_t rc = topic_path(st, name, -1, from, sizeof from);
	if (rc != OK)
		return rc;
	snprintf(topics, sizeof topics, "%s/topics", st->dir);
	snprintf(trash, sizeof trash, "%s/trash", st->dir);
	if (snprintf(to, cap, "%s/%s.%" PRId64, trash, name, clock_mono_ns(st->clock)) >= (int)cap)
		return ERR_SYS(ENAMETOOLONG);
	rc = st->io->rename(st->io, from, to);
	if (rc == ERR_SYS(ENOENT))
		return OK;
	if (rc == OK)
		rc = st->io->fsync_dir(st->io, topics);
	if (rc == OK)
		rc = st->io->fsync_dir(st->io, trash);
	return rc;
}

err_t storage_topic_delete(storage_t *st, const char *name)
{
	pthread_mutex_lock(&st->mu);
	bool found;
	size_t at = topic_find(st, name, &found);
	if (!found) {
		pthread_mutex_unlock(&st->mu);
		return ERR_NOT_FOUND;
	}
	topic_t *t = st->topics[at];
	/* Retire the partitions first: in-flight holders must not touch the directory by path again. */
	pthread_mutex_lock(&t->mu);
	for (int32_t i = 0; i < t->n; i++)
		if (t->parts[i] != NULL)
			partition_retire(t->parts[i]);
	pthread_mutex_unlock(&t->mu);
	/* Its archive goes too: the prefix is recorded in the same transaction and the archiver deletes it. */
	partition_config_t cfg;
	topic_config(t, &cfg);
	char prefix[TOPIC_NAME_MAX + 32];
	archiver_topic_prefix(name, t->created_ms, prefix, sizeof prefix);
	bool archived = st->archiver != NULL || cfg.remote_storage;
	char to[PATH_MAX];
	err_t rc = trash_topic_dir(st, name, to, sizeof to);
	if (rc == OK)
		rc = meta_topic_delete(st->meta, name, archived ? prefix : NULL);
	if (rc == OK) {
		memmove(st->topics + at, st->topics + at + 1, (st->ntopics - at - 1) * sizeof *st->topics);
		st->ntopics--;
		t->discard = true;
		t->trash_dir = strdup(to);
	} else {
		log_error("delete topic %s: %s", name, err_str(rc));
	}
	pthread_mutex_unlock(&st->mu);
	if (rc == OK) {
		log_info("deleted topic %s%s", name, archived && st->archiver != NULL ? "; its archive goes next" : "");
		topic_put(t);
		archiver_wake(st->archiver);
	}
	return rc;
}

err_t storage_topic_add_partitions(storage_t *st, const char *name, int32_t total)
{
	topic_t *t = storage_topic_get(st, name);
	if (t == NULL)
		return ERR_NOT_FOUND;
	pthread_mutex_lock(&t->mu);
	err_t rc = OK;
	if (total <= t->n || total > TOPIC_PARTITIONS_MAX)
		rc = ERR_INVALID;
	if (rc == OK)
		rc = meta_topic_set_partitions(st->meta, name, total);
	if (rc == OK)
		rc = topic_open_partitions(t, total);
	pthread_mutex_unlock(&t->mu);
	topic_put(t);
	return rc;
}

err_t storage_topic_config_set(storage_t *st, const char *name, const char *key, const char *value)
{
	partition_config_t probe = st->opts.defaults;
	const char *why;
	if (value != NULL && topic_config_apply(&probe, key, value, &why) != OK)
		return ERR_INVALID;
	topic_t *t = storage_topic_get(st, name);
	if (t == NULL)
		return ERR_NOT_FOUND;
	err_t rc = meta_config_set(st->meta, name, key, value);
	if (rc == OK) {
		pthread_mutex_lock(&t->mu);
		topic_kv_set(t, key, value);
		topic_recompute(t);
		pthread_mutex_unlock(&t->mu);
	}
	topic_put(t);
	return rc;
}

/* --- the flusher --- */

static void run_retention(storage_t *st)
{
	pthread_mutex_lock(&st->mu);
	size_t n = st->ntopics;
	topic_t **ts = malloc((n + 1) * sizeof *ts);
	ASSERT(ts != NULL);
	for (size_t i = 0; i < n; i++) {
		ts[i] = st->topics[i];
		atomic_fetch_add(&ts[i]->refs, 1);
	}
	pthread_mutex_unlock(&st->mu);
	for (size_t i = 0; i < n; i++) {
		for (int32_t k = 0; k < topic_partition_count(ts[i]); k++) {
			partition_t *p = topic_partition(ts[i], k, NULL);
			if (p != NULL)
				partition_apply_retention(p);
		}
		topic_put(ts[i]);
	}
	free(ts);
}

static void flush_items(flush_item_t *items, size_t n)
{
	/* A partition may be queued twice (re-notified while its flush ran): flush it once per round. */
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = items[j].p == items[i].p;
		if (!seen)
			partition_flush(items[i].p);
	}
	for (size_t i = 0; i < n; i++)
		topic_put(items[i].t);
}

static struct timespec abs_after_ms(int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

typedef struct {
	storage_t *st;
	int index;
} flusher_arg_t;

/* The oldest queued partition (st->mu held, nqueue > 0). First in, first out: the queue holds each dirty
 * partition about once, so taking the newest could pass over an old one for as long as others are re-dirtied. */
static flush_item_t queue_pop_front(storage_t *st)
{
	ASSERT(st->nqueue > 0);
	flush_item_t item = st->queue[0];
	st->nqueue--;
	memmove(st->queue, st->queue + 1, st->nqueue * sizeof *st->queue);
	return item;
}

/* Extra flusher threads (FLUSH_ALWAYS/NEVER): each takes one partition at a time, so fdatasync calls of
 * different partitions overlap instead of queueing behind each other. */
static void *flusher_helper(void *arg)
{
	storage_t *st = arg;
	fl_thread_name("fl-flusher");
	pthread_mutex_lock(&st->mu);
	while (!st->stopping) {
		if (st->nqueue == 0) {
			pthread_cond_wait(&st->cond, &st->mu);
			continue;
		}
		flush_item_t item = queue_pop_front(st);
		pthread_mutex_unlock(&st->mu);
		flush_items(&item, 1);
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

static void *flusher_main(void *arg)
{
	storage_t *st = arg;
	fl_thread_name("fl-flusher");
	const partition_config_t *d = &st->opts.defaults;
	int64_t now = clock_mono_ns(st->clock) / 1000000;
	int64_t next_retention = now + st->opts.retention_check_ms, next_flush = now;
	pthread_mutex_lock(&st->mu);
	while (!st->stopping) {
		now = clock_mono_ns(st->clock) / 1000000;
		bool interval = d->flush_policy == FLUSH_INTERVAL;
		bool flush_now = st->nqueue > 0 && (!interval || now >= next_flush);
		if (!flush_now && now < next_retention) {
			int64_t wait = next_retention - now;
			if (st->nqueue > 0 && interval && next_flush - now < wait)
				wait = next_flush - now;
			struct timespec ts = abs_after_ms(wait);
			pthread_cond_timedwait(&st->cond, &st->mu, &ts);
			continue;
		}
		if (now >= next_retention) {
			pthread_mutex_unlock(&st->mu);
			run_retention(st);
			pthread_mutex_lock(&st->mu);
			next_retention = now + st->opts.retention_check_ms;
			continue;
		}
		if (!interval) { /* one partition at a time, as the helpers take them */
			flush_item_t item = queue_pop_front(st);
			pthread_mutex_unlock(&st->mu);
			flush_items(&item, 1);
			pthread_mutex_lock(&st->mu);
			continue;
		}
		flush_item_t *items = st->queue;
		size_t n = st->nqueue;
		st->queue = NULL;
		st->nqueue = st->capqueue = 0;
		pthread_mutex_unlock(&st->mu);
		flush_items(items, n);
		free(items);
		next_flush = now + (interval ? d->flush_interval_ms : 0);
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

/* --- open and close --- */

typedef struct {
	storage_t *st;
	err_t rc;
} load_ctx_t;

static void load_config(void *arg, const char *key, const char *value)
{
	topic_kv_set(arg, key, value);
}

static void load_topic(void *arg, const char *name, int32_t partitions, int64_t created_ms)
{
	load_ctx_t *c = arg;
	topic_t *t = topic_new(c->st, name);
	t->created_ms = created_ms;
	pthread_mutex_lock(&t->mu);
	err_t rc = meta_config_list(c->st->meta, name, load_config, t);
	topic_recompute(t);
	if (rc == OK)
		rc = topic_open_partitions(t, partitions);
	pthread_mutex_unlock(&t->mu);
	if (rc != OK && c->rc == OK)
		c->rc = rc;
	topic_insert(c->st, t);
}

static err_t mkdir_p(io_t *io, const char *path)
{
	err_t rc = io->mkdir(io, path);
	return rc == ERR_SYS(EEXIST) ? OK : rc;
}

static err_t lock_dir(storage_t *st)
{
	st->lock_fd = -1;
	if (st->io != io_posix())
		return OK;
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/.lock", st->dir) >= (int)sizeof path)
		return ERR_SYS(ENAMETOOLONG);
	st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (st->lock_fd < 0)
		return ERR_SYS(errno);
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		log_error("data directory %s is in use by another factlog process", st->dir);
		return ERR_SYS(EBUSY);
	}
	return OK;
}

err_t storage_open(const storage_opts_t *opts, storage_t **out)
{
	storage_t *st = calloc(1, sizeof *st);
	ASSERT(st != NULL);
	st->opts = *opts;
	st->dir = strdup(opts->data_dir);
	st->io = opts->io ? opts->io : io_posix();
	st->clock = opts->clock ? opts->clock : clock_system();
	st->lock_fd = -1;
	pthread_mutex_init(&st->mu, NULL);
	pthread_mutex_init(&st->commit_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &ca);
	pthread_condattr_destroy(&ca);
	char path[PATH_MAX];
	err_t rc = mkdir_p(st->io, st->dir);
	if (rc == OK)
		rc = lock_dir(st);
	if (rc == OK && snprintf(path, sizeof path, "%s/topics", st->dir) < (int)sizeof path)
		rc = mkdir_p(st->io, path);
	if (rc == OK)
		rc = st->io->fsync_dir(st->io, st->dir);
	if (rc == OK && snprintf(path, sizeof path, "%s/trash", st->dir) < (int)sizeof path) {
		rc = io_remove_tree(st->io, path);
		if (rc == OK)
			rc = mkdir_p(st->io, path);
	}
	if (rc == OK && snprintf(path, sizeof path, "%s/meta.db", st->dir) < (int)sizeof path)
		rc = meta_open(path, &st->meta);
	if (rc == OK)
		rc = meta_offset_list(st->meta, load_commit, st);
	if (rc == OK) {
		load_ctx_t c = { st, OK };
		pthread_mutex_lock(&st->mu);
		rc = meta_topic_list(st->meta, load_topic, &c);
		pthread_mutex_unlock(&st->mu);
		if (rc == OK)
			rc = c.rc;
	}
	if (rc == OK && opts->archive_location != NULL) {
		char cache[PATH_MAX], why[400];
		snprintf(cache, sizeof cache, "%s/archive-cache", st->dir);
		archive_opts_t ao = { .location = opts->archive_location, .s3_endpoint = opts->s3_endpoint,
				      .s3_region = opts->s3_region, .cache_dir = cache,
				      .cache_bytes_max = opts->archive_cache_bytes };
		archive_t *a = NULL;
		rc = archive_open(&ao, &a, why, sizeof why);
		if (rc != OK)
			log_error("%s", why);
		else
			rc = archiver_start(st, st->meta, a, opts->archive_check_ms, &st->archiver);
	}
	if (rc == OK) {
		rc = -pthread_create(&st->flushers[0], NULL, flusher_main, st);
		st->nflushers = rc == OK ? 1 : 0;
	}
	int extra = opts->defaults.flush_policy == FLUSH_INTERVAL ? 0 : opts->flush_threads - 1;
	for (int i = 0; rc == OK && i < extra && st->nflushers < STORAGE_FLUSH_THREADS_MAX; i++) {
		rc = -pthread_create(&st->flushers[st->nflushers], NULL, flusher_helper, st);
		if (rc == OK)
			st->nflushers++;
	}
	if (rc != OK) {
		log_error("cannot open data directory %s: %s", st->dir, err_str(rc));
		storage_close(st);
		return rc;
	}
	*out = st;
	return OK;
}

void storage_archive_info(storage_t *st, const char *topic, int32_t partition, int64_t *segments,
			  int64_t *start, int64_t *end)
{
	if (st->archiver == NULL) {
		*segments = 0;
		*start = *end = -1;
		return;
	}
	archiver_partition_info(st->archiver, topic, partition, segments, start, end);
}

const char *storage_archive_describe(storage_t *st)
{
	return st->archiver ? archiver_describe(st->archiver) : NULL;
}

void storage_archive_now(storage_t *st)
{
	if (st->archiver != NULL)
		archiver_pass(st->archiver);
}

void storage_flush_all(storage_t *st)
{
	pthread_mutex_lock(&st->mu);
	size_t n = st->ntopics;
	topic_t **ts = malloc((n + 1) * sizeof *ts);
	ASSERT(ts != NULL);
	for (size_t i = 0; i < n; i++) {
		ts[i] = st->topics[i];
		atomic_fetch_add(&ts[i]->refs, 1);
	}
	pthread_mutex_unlock(&st->mu);
	for (size_t i = 0; i < n; i++) {
		for (int32_t k = 0; k < topic_partition_count(ts[i]); k++) {
			partition_t *p = topic_partition(ts[i], k, NULL);
			if (p != NULL)
				on_dirty(ts[i], p);
		}
		topic_put(ts[i]);
	}
	free(ts);
}

void storage_cancel_archive(storage_t *st)
{
	if (st != NULL)
		archiver_cancel(st->archiver);
}

void storage_close(storage_t *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&st->mu);
	st->stopping = true;
	pthread_cond_broadcast(&st->cond);
	pthread_mutex_unlock(&st->mu);
	archiver_stop(st->archiver);
	for (int i = 0; i < st->nflushers; i++)
		pthread_join(st->flushers[i], NULL);
	for (size_t i = 0; i < st->nqueue; i++)
		topic_put(st->queue[i].t);
	free(st->queue);
	for (size_t i = 0; i < st->ntopics; i++)
		topic_put(st->topics[i]);
	free(st->topics);
	for (size_t i = 0; i < st->ncommits; i++) {
		free(st->commits[i].group);
		free(st->commits[i].topic);
	}
	free(st->commits);
	pthread_mutex_destroy(&st->commit_mu);
	archiver_free(st->archiver); /* after the partitions that borrowed its state closed */
	meta_close(st->meta);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->mu);
	free(st->dir);
	free(st);
}
