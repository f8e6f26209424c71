/*
 * replay.c -- replaying a range of a stream's history through a function, then optionally handing its live
 * trigger over at the end of the range (runtime_replay_start, docs/functions.md "Replay").
 *
 * A replay is a bounded trigger (trigger.c with tr->rp set): the same filters, batching, ordering, retries,
 * bisection and dead letters as live traffic, fed by a consumer of the group "<trigger group>.replay" that
 * assigns explicit ranges [from, end) per partition instead of subscribing. Its controller thread
 * (replay_main) walks the states of rt_int.h:
 *
 *   STARTING  with `then live`: stop the live trigger (it finishes its invocations and commits), so that the
 *             boundary taken next lies at or past everything it processed; resolve the bounds (high
 *             watermarks, offsetsForTimes, clamping to [log start, high watermark]) and resume: a partition
 *             whose replay group committed inside the range, below the end recorded in that commit's
 *             metadata (RT_REPLAY_METADATA), starts there (an interrupted replay)
 *   RUNNING   the bounded trigger runs until every partition's events below its end are done and committed
 *   HANDOVER  `then live` only: commit the ends to the live group (a consumer of that group that never
 *             joined it: a "simple" commit, accepted while the group has no members), read them back, start
 *             the live trigger again: it continues exactly at the boundary
 *   DONE / FAILED / CANCELLED   the live trigger is started again in every case (unless the function stops)
 *
 * Invariants:
 *   1. The live group's position is only ever written in HANDOVER, after the whole range is done.
 *   2. With `then live` and nothing failing, each event is processed once across the hand-over: those below
 *      the boundary by the replay, those at or past it by the live trigger.
 *   3. One replay per function at a time (fn->replay is replaced only when its replay has ended).
 *   4. A replay that has not ended has a durable record (LOG_DIR/NAME.replay, see "the record" below), so a
 *      restart resumes it by itself; the record goes before the live trigger starts past the boundary, so a
 *      restart never hands over a boundary the live group has already moved past.
 * Locks, in order: rt->mu, fn->rp_mu (the fn->replay pointer), tr->mu, rp->mu (state and progress). The
 * controller never takes rt->mu, so fn_stop (under rt->mu) can join it.
 * Ownership: fn->replay owns its replay; rt_replay_stop_fn and the next replay free it after joining its thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/thread.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "runtime/rt_int.h"

#define RP_KAFKA_TIMEOUT_MS 10000
#define RP_HANDOVER_ATTEMPTS 40 /* a second apart: covers a lost LeaveGroup's session timeout (10 s) */
#define RP_RESUME_ATTEMPTS 30 /* a second apart: reading a recovered replay's positions */

static const char *const state_names[] = { "starting", "running", "handing_over", "done", "failed", "cancelled" };

/* ---- bounds ------------------------------------------------------------------------------------------ */

static bool bound_parse(const char *s, rt_rp_bound_t *b)
{
	size_t n = strlen(s);
	if (strcmp(s, "earliest") == 0) {
		*b = (rt_rp_bound_t){ .kind = RP_EARLIEST };
		return true;
	}
	if (strcmp(s, "latest") == 0) {
		*b = (rt_rp_bound_t){ .kind = RP_LATEST };
		return true;
	}
	const char *digits = s[0] == '@' ? s + 1 : s;
	if (digits[0] >= '0' && digits[0] <= '9' && strspn(digits, "0123456789") == strlen(digits) &&
	    strlen(digits) <= 18) {
		*b = (rt_rp_bound_t){ .kind = s[0] == '@' ? RP_TIME : RP_OFFSET, .v = strtoll(digits, NULL, 10) };
		return true;
	}
	int64_t ms;
	if (app_parse_time(s, n, &ms)) {
		*b = (rt_rp_bound_t){ .kind = RP_TIME, .v = ms };
		return true;
	}
	return false;
}

/* The offsets of bound b for every partition of rp (lo/hi: the watermarks), before clamping. */
static err_t bound_offsets(rt_replay_t *rp, const rt_rp_bound_t *b, const int64_t *lo, const int64_t *hi,
			   int64_t *out, char *err, size_t errcap)
{
	if (b->kind != RP_TIME) {
		for (int i = 0; i < rp->nparts; i++)
			out[i] = b->kind == RP_EARLIEST ? lo[i] : b->kind == RP_LATEST ? hi[i] : b->v;
		return OK;
	}
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rp->nparts);
	for (int i = 0; i < rp->nparts; i++)
		rd_kafka_topic_partition_list_add(l, rp->def.stream, rp->parts[i].partition)->offset = b->v;
	rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rp->tr.consumer, l, RP_KAFKA_TIMEOUT_MS);
	for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < rp->nparts; i++) {
		rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_find(l, rp->def.stream,
										     rp->parts[i].partition);
		if (t == NULL || t->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			e = t != NULL ? t->err : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
		else
			out[i] = t->offset >= 0 ? t->offset : hi[i]; /* no record at or after the time: the end */
	}
	rd_kafka_topic_partition_list_destroy(l);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errcap, "offsets for a time of %s: %s", rp->def.stream, rd_kafka_err2str(e));
		return ERR_INVALID;
	}
	return OK;
}

static int cmp_part(const void *a, const void *b)
{
	const rt_rp_part_t *x = a, *y = b;
	return x->partition < y->partition ? -1 : x->partition > y->partition;
}

/* The stream's partitions and their watermarks (lo, hi: malloc'd, rp->nparts long). */
static err_t read_partitions(rt_replay_t *rp, int64_t **lo, int64_t **hi, char *err, size_t errcap)
{
	rd_kafka_t *rk = rp->tr.consumer;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, rp->def.stream, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, RP_KAFKA_TIMEOUT_MS);
	rd_kafka_topic_destroy(rkt);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errcap, "cannot read the partitions of %s: %s", rp->def.stream, rd_kafka_err2str(e));
		return ERR_CLOSED;
	}
	if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    md->topics[0].partition_cnt <= 0) {
		snprintf(err, errcap, "stream %s: %s", rp->def.stream,
			 md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
		rd_kafka_metadata_destroy(md);
		return ERR_NOT_FOUND;
	}
	int n = md->topics[0].partition_cnt;
	rt_rp_part_t *parts = calloc((size_t)n, sizeof *parts);
	for (int i = 0; i < n; i++)
		parts[i].partition = md->topics[0].partitions[i].id;
	rd_kafka_metadata_destroy(md);
	qsort(parts, (size_t)n, sizeof *parts, cmp_part);
	*lo = calloc((size_t)n, sizeof **lo);
	*hi = calloc((size_t)n, sizeof **hi);
	for (int i = 0; i < n && e == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
		e = rd_kafka_query_watermark_offsets(rk, rp->def.stream, parts[i].partition, &(*lo)[i], &(*hi)[i],
						     RP_KAFKA_TIMEOUT_MS);
	pthread_mutex_lock(&rp->mu);
	rp->parts = parts;
	rp->nparts = n;
	pthread_mutex_unlock(&rp->mu);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errcap, "cannot read the watermarks of %s: %s", rp->def.stream, rd_kafka_err2str(e));
		return ERR_CLOSED;
	}
	return OK;
}

/* Where an unfinished earlier replay committed: a partition whose replay group position lies inside the range
 * and below the end that replay recorded starts there. */
static void resume_positions(rt_replay_t *rp, int64_t *from, const int64_t *end)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rp->nparts);
	for (int i = 0; i < rp->nparts; i++)
		rd_kafka_topic_partition_list_add(l, rp->def.stream, rp->parts[i].partition);
	rd_kafka_resp_err_t e = rd_kafka_committed(rp->tr.consumer, l, RP_KAFKA_TIMEOUT_MS);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rt_fn_log(rp->fn, "replay: cannot read the position of %s (%s); starting at --from", rp->group,
			  rd_kafka_err2str(e));
		rd_kafka_topic_partition_list_destroy(l);
		return;
	}
	size_t mlen = strlen(RT_REPLAY_METADATA);
	for (int i = 0; i < rp->nparts; i++) {
		rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_find(l, rp->def.stream,
										     rp->parts[i].partition);
		if (t == NULL || t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->offset < 0 || t->metadata == NULL ||
		    t->metadata_size <= mlen || t->metadata_size > 40 || memcmp(t->metadata, RT_REPLAY_METADATA, mlen) != 0)
			continue;
		char md[48];
		memcpy(md, t->metadata, t->metadata_size);
		md[t->metadata_size] = 0;
		int64_t was_end = strtoll(md + mlen, NULL, 10);
		if (t->offset < was_end && t->offset > from[i] && t->offset <= end[i]) {
			from[i] = t->offset;
			rp->parts[i].resumed = true;
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* Resolves the range of every partition (rp->parts) and the totals. */
static err_t resolve(rt_replay_t *rp, char *err, size_t errcap)
{
	int64_t *lo = NULL, *hi = NULL;
	err_t rc = read_partitions(rp, &lo, &hi, err, errcap);
	int n = rp->nparts;
	int64_t *from = calloc((size_t)n + 1, sizeof *from), *end = calloc((size_t)n + 1, sizeof *end);
	if (rc == OK)
		rc = bound_offsets(rp, &rp->from, lo, hi, from, err, errcap);
	if (rc == OK) {
		rt_rp_bound_t latest = { .kind = RP_LATEST };
		rc = bound_offsets(rp, rp->has_to ? &rp->to : &latest, lo, hi, end, err, errcap);
	}
	if (rc == OK) {
		for (int i = 0; i < n; i++) {
			from[i] = from[i] < lo[i] ? lo[i] : from[i] > hi[i] ? hi[i] : from[i];
			end[i] = end[i] < lo[i] ? lo[i] : end[i] > hi[i] ? hi[i] : end[i];
			if (end[i] < from[i])
				end[i] = from[i];
		}
		resume_positions(rp, from, end);
		pthread_mutex_lock(&rp->mu);
		rp->total = 0;
		for (int i = 0; i < n; i++) {
			rp->parts[i].from = rp->parts[i].pos = from[i];
			rp->parts[i].end = end[i];
			rp->total += end[i] - from[i];
		}
		pthread_mutex_unlock(&rp->mu);
	}
	free(lo);
	free(hi);
	free(from);
	free(end);
	return rc;
}

/* ---- the record: a replay outlives a restart -------------------------------------------------------------
 *
 * LOG_DIR/NAME.replay holds a replay that has not ended: its request (id, stream, from, to, then live) and,
 * once resolved, every partition's range [from, end). It is written atomically (a temporary file, fsync,
 * rename, fsync of the directory) before the request is answered, rewritten with the ranges before the
 * bounded trigger starts, and removed when the replay ends for good: done (before the live trigger moves past
 * the boundary), failed, or cancelled by a request. A replay that only stops because its function stops
 * (SIGTERM, kill -9, a deploy that changes the function) keeps it, and the function's next start resumes it
 * with the same ranges (fn_start, rt_replay_recorded): each partition from where the replay group committed,
 * and, with `then live`, with the live trigger held stopped until the hand-over. Before the ranges are
 * recorded, the replay group is committed at each range's start (with the range's end as metadata), so a
 * position left by an earlier, finished replay is never taken for this one's.
 */

#define RECORD_BYTES_MAX (1 << 20)

static void record_path(const runtime_t *rt, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s.replay", rt->log_dir, name);
}

static err_t fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return ERR_SYS(errno);
	err_t rc = fsync(fd) != 0 ? ERR_SYS(errno) : OK;
	close(fd);
	return rc;
}

/* Writes rp's record; with its ranges when `ranges`. */
static err_t record_write(rt_replay_t *rp, bool ranges, char *err, size_t errcap)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:o,s:b,s:I}", "version", 1, "id", rp->id, "stream",
			      rp->def.stream, "group", rp->group, "from", rp->from_text, "to",
			      rp->has_to ? json_string(rp->to_text) : json_null(), "then_live", rp->then_live,
			      "started", (json_int_t)rp->started_wall_ms);
	if (ranges) {
		json_t *a = json_array();
		pthread_mutex_lock(&rp->mu);
		for (int i = 0; i < rp->nparts; i++)
			json_array_append_new(a, json_pack("[i,I,I]", (int)rp->parts[i].partition,
							   (json_int_t)rp->parts[i].from, (json_int_t)rp->parts[i].end));
		pthread_mutex_unlock(&rp->mu);
		json_object_set_new(o, "ranges", a);
	}
	char *text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	char path[4200], tmp[4210];
	record_path(rp->fn->rt, rp->fn->def->name, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	err_t rc = OK;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(text);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
		rc = ERR_SYS(errno ? errno : EIO);
	if (fd >= 0)
		close(fd);
	if (rc == OK && rename(tmp, path) != 0)
		rc = ERR_SYS(errno);
	if (rc == OK)
		rc = fsync_dir(rp->fn->rt->log_dir);
	if (rc != OK) {
		unlink(tmp);
		snprintf(err, errcap, "cannot record the replay in %s: %s", path, err_str(rc));
	}
	free(text);
	return rc;
}

static void record_remove(runtime_t *rt, const char *name)
{
	char path[4200];
	record_path(rt, name, path, sizeof path);
	if (unlink(path) != 0 && errno != ENOENT)
		log_error("replay: cannot remove %s: %s (a restart would resume an ended replay)", path,
			  strerror(errno));
	else if (fsync_dir(rt->log_dir) != OK)
		log_warn("replay: cannot sync %s after removing %s", rt->log_dir, path);
}

void rt_replay_forget(runtime_t *rt, const char *name)
{
	record_remove(rt, name);
}

void rt_replay_sweep(runtime_t *rt)
{
	DIR *d = opendir(rt->log_dir);
	if (d == NULL)
		return;
	const char *ext = ".replay";
	size_t el = strlen(ext);
	struct dirent *e;
	for (int seen = 0; (e = readdir(d)) != NULL && seen < 100000; seen++) {
		size_t n = strlen(e->d_name);
		if (n <= el || strcmp(e->d_name + n - el, ext) != 0)
			continue;
		char name[256];
		snprintf(name, sizeof name, "%.*s", (int)(n - el), e->d_name);
		bool running = false;
		pthread_mutex_lock(&rt->mu);
		for (int i = 0; i < rt->nfns && !running; i++)
			running = strcmp(rt->fns[i]->def->name, name) == 0;
		pthread_mutex_unlock(&rt->mu);
		if (!running) {
			log_info("replay: function %s is not in the app: its unfinished replay is dropped", name);
			record_remove(rt, name);
		}
	}
	closedir(d);
}

/* The ranges of a record ([[partition, from, end], ...]), or false when malformed. */
static bool record_ranges(json_t *a, rt_rp_part_t **out, int *n)
{
	*out = NULL;
	*n = 0;
	if (a == NULL)
		return true;
	if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > 100000)
		return false;
	rt_rp_part_t *v = calloc(json_array_size(a), sizeof *v);
	ASSERT(v != NULL);
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e) {
		json_int_t p, from, end;
		if (json_unpack(e, "[I,I,I]", &p, &from, &end) != 0 || p < 0 || p > INT32_MAX || from < 0 ||
		    end < from || (i > 0 && p <= v[i - 1].partition)) {
			free(v);
			return false;
		}
		v[i] = (rt_rp_part_t){ .partition = (int32_t)p, .from = from, .end = end, .pos = from };
	}
	*out = v;
	*n = (int)json_array_size(a);
	return true;
}

static rt_replay_t *replay_new(rt_fn_t *fn, int trigger, const runtime_replay_req_t *req, const rt_rp_bound_t *from,
			       const rt_rp_bound_t *to);
static int pick_trigger(const rt_fn_t *fn, const char *stream, char *err, size_t errcap);

/* Builds the replay a record describes; NULL with why in err when the record is unusable. */
static rt_replay_t *record_parse(rt_fn_t *fn, json_t *o, char *err, size_t errcap)
{
	const char *id = NULL, *stream = NULL, *from = NULL;
	json_t *to = NULL, *ranges = NULL;
	int version = 0, then_live = 0;
	rt_rp_bound_t fb, tb;
	if (json_unpack(o, "{s:i,s:s,s:s,s:s,s:o,s:b,s?o}", "version", &version, "id", &id, "stream", &stream,
			"from", &from, "to", &to, "then_live", &then_live, "ranges", &ranges) != 0 ||
	    version != 1 || strlen(id) != 16 || strspn(id, "0123456789abcdef") != 16 || strlen(from) >= 64 ||
	    !bound_parse(from, &fb) ||
	    !(json_is_null(to) || (json_is_string(to) && strlen(json_string_value(to)) < 64 &&
				   bound_parse(json_string_value(to), &tb)))) {
		snprintf(err, errcap, "it is malformed");
		return NULL;
	}
	rt_rp_part_t *parts;
	int nparts;
	if (!record_ranges(ranges, &parts, &nparts)) {
		snprintf(err, errcap, "its ranges are malformed");
		return NULL;
	}
	int ti = pick_trigger(fn, stream, err, errcap);
	if (ti < 0) {
		free(parts);
		return NULL;
	}
	runtime_replay_req_t req = { .from = from, .to = json_string_value(to), .stream = stream,
				     .then_live = then_live };
	rt_replay_t *rp = replay_new(fn, ti, &req, &fb, json_is_null(to) ? NULL : &tb);
	memcpy(rp->id, id, 16);
	json_int_t started = json_integer_value(json_object_get(o, "started"));
	if (started > 0)
		rp->started_wall_ms = started; /* when it was requested, not when it resumed */
	rp->recovered = true;
	rp->rec_parts = parts;
	rp->rec_nparts = nparts;
	return rp;
}

rt_replay_t *rt_replay_recorded(rt_fn_t *fn, int *held)
{
	*held = -1;
	char path[4200], err[512] = "";
	record_path(fn->rt, fn->def->name, path, sizeof path);
	struct stat st;
	if (stat(path, &st) != 0)
		return NULL; /* no replay was running */
	json_error_t je;
	json_t *o = NULL;
	rt_replay_t *rp = NULL;
	if (st.st_size > RECORD_BYTES_MAX)
		snprintf(err, sizeof err, "it is larger than %d bytes", RECORD_BYTES_MAX);
	else if ((o = json_load_file(path, JSON_REJECT_DUPLICATES, &je)) == NULL)
		snprintf(err, sizeof err, "it is not JSON (%s)", je.text);
	else
		rp = record_parse(fn, o, err, sizeof err);
	json_decref(o);
	if (rp == NULL) {
		char bad[4210];
		snprintf(bad, sizeof bad, "%s.bad", path);
		rt_fn_log(fn, "replay: the record %s cannot be resumed: %s (kept as %s)", path, err, bad);
		if (rename(path, bad) != 0)
			record_remove(fn->rt, fn->def->name);
		return NULL;
	}
	if (rp->then_live)
		*held = rp->trigger;
	rt_fn_log(fn, "replay %s of %s: resuming after a restart%s", rp->id, rp->def.stream,
		  rp->then_live ? "; the live trigger waits for its hand-over" : "");
	return rp;
}

/* Commits every range's start to the replay group, with its end as the metadata (see the record above). */
static err_t commit_starts(rt_replay_t *rp, char *err, size_t errcap)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rp->nparts > 0 ? rp->nparts : 1);
	for (int i = 0; i < rp->nparts; i++) {
		const rt_rp_part_t *r = &rp->parts[i];
		if (r->from >= r->end)
			continue;
		rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_add(l, rp->def.stream, r->partition);
		char md[64];
		int n = snprintf(md, sizeof md, RT_REPLAY_METADATA "%" PRId64, r->end);
		t->offset = r->from;
		t->metadata = strdup(md); /* the list frees it */
		t->metadata_size = (size_t)n;
	}
	rd_kafka_resp_err_t e = l->cnt > 0 ? rd_kafka_commit(rp->tr.consumer, l, 0) : RD_KAFKA_RESP_ERR_NO_ERROR;
	for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++)
		e = l->elems[i].err;
	rd_kafka_topic_partition_list_destroy(l);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errcap, "committing the range starts to %s: %s", rp->group, rd_kafka_err2str(e));
		return ERR_CLOSED;
	}
	return OK;
}

/* A recovered replay's ranges are its record's; each partition starts where the replay group committed
 * (commit_starts made sure that is this replay's own position). The broker may have just started with us:
 * reading the positions is tried for up to RP_RESUME_ATTEMPTS seconds. */
static err_t resolve_recorded(rt_replay_t *rp, char *err, size_t errcap)
{
	pthread_mutex_lock(&rp->mu);
	rp->parts = rp->rec_parts;
	rp->nparts = rp->rec_nparts;
	rp->rec_parts = NULL;
	pthread_mutex_unlock(&rp->mu);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rp->nparts);
	for (int i = 0; i < rp->nparts; i++)
		rd_kafka_topic_partition_list_add(l, rp->def.stream, rp->parts[i].partition);
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TRANSPORT;
	for (int attempt = 0; attempt < RP_RESUME_ATTEMPTS && !atomic_load(&rp->cancel); attempt++) {
		if (attempt > 0)
			nanosleep(&(struct timespec){ .tv_sec = 1 }, NULL);
		e = rd_kafka_committed(rp->tr.consumer, l, RP_KAFKA_TIMEOUT_MS);
		for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < l->cnt; i++)
			e = l->elems[i].err;
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
			break;
	}
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errcap, "cannot read the position of %s: %s", rp->group, rd_kafka_err2str(e));
		rd_kafka_topic_partition_list_destroy(l);
		return ERR_CLOSED;
	}
	size_t mlen = strlen(RT_REPLAY_METADATA);
	pthread_mutex_lock(&rp->mu);
	rp->total = 0;
	for (int i = 0; i < rp->nparts; i++) {
		rt_rp_part_t *r = &rp->parts[i];
		const rd_kafka_topic_partition_t *t = &l->elems[i];
		char md[48] = "";
		if (t->metadata != NULL && t->metadata_size < sizeof md)
			memcpy(md, t->metadata, t->metadata_size);
		bool ours = strncmp(md, RT_REPLAY_METADATA, mlen) == 0 && strtoll(md + mlen, NULL, 10) == r->end;
		if (ours && t->offset > r->from && t->offset <= r->end) {
			r->from = r->pos = t->offset;
			r->resumed = true;
		}
		rp->total += r->end - r->from;
	}
	pthread_mutex_unlock(&rp->mu);
	rd_kafka_topic_partition_list_destroy(l);
	return OK;
}

/* ---- the hand-over ----------------------------------------------------------------------------------- */

/* Commits every partition's end to the live group and reads it back. The live trigger is stopped, so the
 * group has no member of ours; a commit with no generation is accepted by Kafka (and factlog) from a client
 * that never joined, as long as the group is empty. */
static err_t handover(rt_replay_t *rp, char *err, size_t errcap)
{
	char es[256];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	const char *kv[][2] = {
		{ "bootstrap.servers", rp->fn->rt->bootstrap },
		{ "group.id", rp->def.group },
		{ "client.id", "factlog-fn-handover" },
		{ "enable.auto.commit", "false" },
		{ "log_level", "3" },
	};
	for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
		if (rd_kafka_conf_set(c, kv[i][0], kv[i][1], es, sizeof es) != RD_KAFKA_CONF_OK) {
			snprintf(err, errcap, "%s: %s", kv[i][0], es);
			rd_kafka_conf_destroy(c);
			return ERR_INVALID;
		}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, es, sizeof es);
	if (rk == NULL) {
		snprintf(err, errcap, "consumer: %s", es);
		return ERR_INVALID;
	}
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(rp->nparts);
	for (int i = 0; i < rp->nparts; i++)
		rd_kafka_topic_partition_list_add(l, rp->def.stream, rp->parts[i].partition)->offset = rp->parts[i].end;
	err_t rc = ERR_CLOSED;
	for (int attempt = 0; attempt < RP_HANDOVER_ATTEMPTS && rc != OK; attempt++) {
		if (attempt > 0 && atomic_load(&rp->cancel))
			break; /* err says what failed last */
		if (attempt > 0)
			nanosleep(&(struct timespec){ .tv_sec = 1 }, NULL);
		rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
		rd_kafka_topic_partition_list_t *back = rd_kafka_topic_partition_list_copy(l);
		for (int i = 0; i < back->cnt; i++)
			back->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
			e = rd_kafka_committed(rk, back, RP_KAFKA_TIMEOUT_MS);
		for (int i = 0; e == RD_KAFKA_RESP_ERR_NO_ERROR && i < back->cnt; i++)
			if (back->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
				e = back->elems[i].err;
			else if (back->elems[i].offset != l->elems[i].offset)
				e = RD_KAFKA_RESP_ERR__STATE;
		rd_kafka_topic_partition_list_destroy(back);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
			rc = OK;
		} else {
			snprintf(err, errcap, "committing the boundary to group %s: %s%s", rp->def.group,
				 e == RD_KAFKA_RESP_ERR__STATE ? "it did not read back" : rd_kafka_err2str(e),
				 e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION
					 ? " (another consumer is a member of the group)"
					 : "");
			rt_fn_log(rp->fn, "replay: %s; trying again", err);
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return rc;
}

/* ---- the controller ---------------------------------------------------------------------------------- */

static void set_state(rt_replay_t *rp, int state, const char *error)
{
	pthread_mutex_lock(&rp->mu);
	rp->state = state;
	if (error != NULL && error[0] != 0 && rp->error[0] == 0)
		snprintf(rp->error, sizeof rp->error, "%s", error);
	if (state == RP_RUNNING)
		rp->run_start_ms = rt_now_ms();
	if (state >= RP_DONE) {
		rp->finished_wall_ms = rt_wall_ms();
		if (rp->run_end_ms == 0)
			rp->run_end_ms = rt_now_ms();
	}
	pthread_cond_broadcast(&rp->cond);
	pthread_mutex_unlock(&rp->mu);
}

/* Runs the bounded trigger until it finished or the replay is cancelled. */
static void run_range(rt_replay_t *rp)
{
	pthread_mutex_lock(&rp->mu);
	while (!atomic_load(&rp->tr.finished) && !atomic_load(&rp->cancel)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&rp->cond, &rp->mu, &ts);
	}
	if (atomic_load(&rp->tr.finished))
		rp->run_end_ms = rt_now_ms();
	pthread_mutex_unlock(&rp->mu);
	rt_trigger_stop(&rp->tr); /* finished: it has left its loop; cancelled: in-flight work ends, commits */
}

static void *replay_main(void *arg)
{
	rt_replay_t *rp = arg;
	fl_thread_name("fl-replay");
	rt_fn_t *fn = rp->fn;
	rt_trigger_t *live = &fn->triggers[rp->trigger];
	char err[512] = "";
	int final = RP_CANCELLED;
	bool held = false;
	if (rp->then_live) {
		rt_fn_log(fn, "replay: stopping trigger %s for the hand-over", rp->def.stream);
		rt_trigger_stop(live); /* finishes its invocations in flight and commits */
		rt_trigger_set_state(live, RT_REPLAY_HELD);
		held = true;
	}
	if (atomic_load(&rp->cancel))
		goto out;
	err_t rc = rt_trigger_open(&rp->tr, err, sizeof err);
	if (rc == OK && rp->rec_parts != NULL) {
		rc = resolve_recorded(rp, err, sizeof err);
	} else if (rc == OK) {
		rc = resolve(rp, err, sizeof err);
		if (rc == OK)
			rc = commit_starts(rp, err, sizeof err);
		if (rc == OK)
			rc = record_write(rp, true, err, sizeof err);
	}
	if (rc != OK) {
		final = RP_FAILED;
		goto out;
	}
	rt_fn_log(fn, "replay of %s started: %" PRId64 " event(s) in %d partition(s), group %s%s", rp->def.stream,
		  rp->total, rp->nparts, rp->group, rp->then_live ? ", then live" : "");
	set_state(rp, RP_RUNNING, NULL);
	if (rt_trigger_start(&rp->tr, err, sizeof err) != OK) {
		final = RP_FAILED;
		goto out;
	}
	run_range(rp);
	if (!atomic_load(&rp->tr.finished))
		goto out;
	final = RP_DONE;
	if (rp->then_live) {
		set_state(rp, RP_HANDOVER, NULL);
		if (handover(rp, err, sizeof err) != OK)
			final = RP_FAILED;
	}
out:
	rt_trigger_stop(&rp->tr);
	/* Ended for good: the record goes before the live trigger can move past the boundary. Stopped with its
	 * function: the record stays, and the function's next start resumes the replay. */
	if (!atomic_load(&rp->fn_stopping) || atomic_load(&rp->cancelled))
		record_remove(fn->rt, fn->def->name);
	else
		rt_fn_log(fn, "replay %s of %s: stopped with the function; its next start resumes it", rp->id,
			  rp->def.stream);
	if (held && !atomic_load(&rp->fn_stopping)) {
		char lerr[512] = "";
		if (rt_trigger_start(live, lerr, sizeof lerr) != OK)
			rt_fn_log(fn, "replay: cannot start trigger %s again: %s", rp->def.stream, lerr);
		else if (final == RP_DONE)
			rt_fn_log(fn, "replay: trigger %s continues live at the boundary", rp->def.stream);
		else
			rt_fn_log(fn, "replay: trigger %s continues live where it was", rp->def.stream);
	}
	rt_fn_log(fn, "replay of %s %s%s%s", rp->def.stream, state_names[final], err[0] ? ": " : "", err);
	set_state(rp, final, err); /* last: the next replay may join and free rp once it sees this */
	return NULL;
}

/* ---- requests and introspection ---------------------------------------------------------------------- */

static void replay_free(rt_replay_t *rp)
{
	if (rp->thread_started)
		pthread_join(rp->thread, NULL);
	rt_trigger_fini(&rp->tr);
	pthread_mutex_destroy(&rp->mu);
	pthread_cond_destroy(&rp->cond);
	free(rp->parts);
	free(rp->rec_parts);
	free(rp);
}

static void time_text(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static json_t *replay_json(rt_replay_t *rp)
{
	json_t *o = json_object();
	char tb[32];
	pthread_mutex_lock(&rp->mu);
	json_object_set_new(o, "id", json_string(rp->id));
	json_object_set_new(o, "state", json_string(state_names[rp->state]));
	json_object_set_new(o, "stream", json_string(rp->def.stream));
	json_object_set_new(o, "group", json_string(rp->group));
	json_object_set_new(o, "from", json_string(rp->from_text));
	json_object_set_new(o, "to", rp->has_to ? json_string(rp->to_text) : json_null());
	json_object_set_new(o, "then", rp->then_live ? json_string("live") : json_null());
	json_object_set_new(o, "recovered", json_boolean(rp->recovered));
	json_t *parts = json_array();
	for (int i = 0; i < rp->nparts && rp->state != RP_STARTING; i++) {
		const rt_rp_part_t *r = &rp->parts[i];
		json_array_append_new(parts, json_pack("{s:i,s:I,s:I,s:I,s:b}", "partition", (int)r->partition, "from",
						       (json_int_t)r->from, "to", (json_int_t)r->end, "position",
						       (json_int_t)r->pos, "resumed", r->resumed));
	}
	json_object_set_new(o, "partitions", parts);
	json_object_set_new(o, "events_total", json_integer(rp->total));
	json_object_set_new(o, "events_done", json_integer(rp->done));
	/* the average since the range started: replays read history, so it is steady */
	int64_t elapsed_ms = rp->run_start_ms == 0 ? 0 : (rp->run_end_ms ? rp->run_end_ms : rt_now_ms()) - rp->run_start_ms;
	double rate = elapsed_ms > 0 ? (double)rp->done * 1000.0 / (double)elapsed_ms : 0.0;
	json_object_set_new(o, "rate_per_second", json_integer((json_int_t)(rate + 0.5)));
	int64_t left = rp->total - rp->done;
	json_t *eta = rp->state == RP_STARTING ? json_null()
		      : left <= 0 ? json_integer(0)
		      : rate > 0 ? json_integer((json_int_t)((double)left / rate + 0.5))
				 : json_null(); /* unknown until something is done */
	json_object_set_new(o, "eta_seconds", eta);
	time_text(rp->started_wall_ms, tb);
	json_object_set_new(o, "started", json_string(tb));
	if (rp->finished_wall_ms > 0)
		time_text(rp->finished_wall_ms, tb);
	json_object_set_new(o, "finished", rp->finished_wall_ms > 0 ? json_string(tb) : json_null());
	if (rp->error[0] != 0)
		json_object_set_new(o, "error", json_string(rp->error));
	pthread_mutex_unlock(&rp->mu);
	return o;
}

json_t *rt_replay_json_fn(rt_fn_t *fn)
{
	pthread_mutex_lock(&fn->rp_mu);
	json_t *o = fn->replay != NULL ? replay_json(fn->replay) : NULL;
	pthread_mutex_unlock(&fn->rp_mu);
	return o;
}

void rt_replay_stop_fn(rt_fn_t *fn)
{
	pthread_mutex_lock(&fn->rp_mu);
	rt_replay_t *rp = fn->replay;
	fn->replay = NULL;
	pthread_mutex_unlock(&fn->rp_mu);
	if (rp == NULL)
		return;
	atomic_store(&rp->fn_stopping, true);
	atomic_store(&rp->cancel, true);
	pthread_mutex_lock(&rp->mu);
	pthread_cond_broadcast(&rp->cond);
	pthread_mutex_unlock(&rp->mu);
	replay_free(rp);
}

static rt_fn_t *fn_find(runtime_t *rt, const char *name)
{
	for (int i = 0; i < rt->nfns; i++)
		if (strcmp(rt->fns[i]->def->name, name) == 0)
			return rt->fns[i];
	return NULL;
}

/* The index of the trigger the request names, or -1 (err says why). */
static int pick_trigger(const rt_fn_t *fn, const char *stream, char *err, size_t errcap)
{
	if (stream == NULL) {
		if (fn->ntriggers == 1)
			return 0;
		snprintf(err, errcap, "function %s has %d triggers: name the stream to replay", fn->def->name,
			 fn->ntriggers);
		return -1;
	}
	int found = -1;
	for (int i = 0; i < fn->ntriggers; i++)
		if (strcmp(fn->triggers[i].def->stream, stream) == 0) {
			if (found >= 0) {
				snprintf(err, errcap, "function %s has several triggers on stream %s", fn->def->name,
					 stream);
				return -1;
			}
			found = i;
		}
	if (found < 0)
		snprintf(err, errcap, "function %s has no trigger on stream %s", fn->def->name, stream);
	return found;
}

static rt_replay_t *replay_new(rt_fn_t *fn, int trigger, const runtime_replay_req_t *req, const rt_rp_bound_t *from,
			       const rt_rp_bound_t *to)
{
	rt_replay_t *rp = calloc(1, sizeof *rp);
	ASSERT(rp != NULL);
	rp->fn = fn;
	rp->trigger = trigger;
	rp->from = *from;
	rp->has_to = to != NULL;
	if (to != NULL)
		rp->to = *to;
	rp->then_live = req->then_live;
	snprintf(rp->from_text, sizeof rp->from_text, "%s", req->from);
	snprintf(rp->to_text, sizeof rp->to_text, "%s", req->to ? req->to : "");
	for (int i = 0; i < 16; i++)
		rp->id[i] = "0123456789abcdef"[random() & 15];
	const fn_trigger_t *live = fn->triggers[trigger].def;
	snprintf(rp->group, sizeof rp->group, "%s.replay", live->group);
	/* History is all there: no batching window, and as many batches per partition as the pool has workers
	 * (key order and partition order still hold; scale.max still bounds the invocations at once). */
	rp->def = *live;
	if (rp->def.concurrency < fn->def->max_workers)
		rp->def.concurrency = fn->def->max_workers;
	rp->def.batch_window_ms = 0;
	rp->tr.fn = fn;
	rp->tr.def = &rp->def;
	rp->tr.index = 1000 + trigger;
	rp->tr.rp = rp;
	rp->tr.group = rp->group;
	pthread_mutex_init(&rp->mu, NULL);
	pthread_cond_init(&rp->cond, NULL);
	rp->state = RP_STARTING;
	rp->started_wall_ms = rt_wall_ms();
	return rp;
}

err_t runtime_replay_start(runtime_t *rt, const char *name, const runtime_replay_req_t *req, json_t **out,
			   char *err, size_t errcap)
{
	rt_rp_bound_t from, to;
	if (req->from == NULL || strlen(req->from) >= 64 || !bound_parse(req->from, &from)) {
		snprintf(err, errcap, "from: expected earliest, latest, an offset, an RFC 3339 time or @epoch-ms");
		return ERR_INVALID;
	}
	if (req->to != NULL && (strlen(req->to) >= 64 || !bound_parse(req->to, &to))) {
		snprintf(err, errcap, "to: expected earliest, latest, an offset, an RFC 3339 time or @epoch-ms");
		return ERR_INVALID;
	}
	pthread_mutex_lock(&rt->mu);
	rt_fn_t *fn = fn_find(rt, name);
	if (fn == NULL) {
		pthread_mutex_unlock(&rt->mu);
		snprintf(err, errcap, "no such function");
		return ERR_NOT_FOUND;
	}
	int ti = pick_trigger(fn, req->stream, err, errcap);
	if (ti < 0) {
		pthread_mutex_unlock(&rt->mu);
		return ERR_INVALID;
	}
	pthread_mutex_lock(&fn->rp_mu);
	rt_replay_t *old = fn->replay;
	if (old != NULL) {
		pthread_mutex_lock(&old->mu);
		bool running = old->state < RP_DONE;
		pthread_mutex_unlock(&old->mu);
		if (running) {
			pthread_mutex_unlock(&fn->rp_mu);
			pthread_mutex_unlock(&rt->mu);
			snprintf(err, errcap, "a replay of %s is running (cancel it with DELETE)", name);
			return ERR_EXISTS;
		}
	}
	rt_replay_t *rp = replay_new(fn, ti, req, &from, req->to != NULL ? &to : NULL);
	err_t rc = record_write(rp, false, err, errcap); /* durable before it is accepted */
	if (rc != OK) {
		pthread_mutex_unlock(&fn->rp_mu);
		pthread_mutex_unlock(&rt->mu);
		replay_free(rp);
		return rc;
	}
	fn->replay = rp;
	pthread_mutex_unlock(&fn->rp_mu);
	if (old != NULL)
		replay_free(old); /* it ended: its thread is returning */
	if (pthread_create(&rp->thread, NULL, replay_main, rp) == 0) {
		rp->thread_started = true;
	} else {
		record_remove(fn->rt, fn->def->name);
		set_state(rp, RP_FAILED, "cannot start a thread");
	}
	*out = replay_json(rp);
	pthread_mutex_unlock(&rt->mu);
	return OK;
}

err_t runtime_replay_cancel(runtime_t *rt, const char *name, json_t **out, char *err, size_t errcap)
{
	pthread_mutex_lock(&rt->mu);
	rt_fn_t *fn = fn_find(rt, name);
	err_t rc = ERR_NOT_FOUND;
	if (fn == NULL) {
		snprintf(err, errcap, "no such function");
	} else {
		pthread_mutex_lock(&fn->rp_mu);
		rt_replay_t *rp = fn->replay;
		if (rp != NULL) {
			pthread_mutex_lock(&rp->mu);
			if (rp->state < RP_DONE) {
				atomic_store(&rp->cancelled, true);
				atomic_store(&rp->cancel, true);
				pthread_cond_broadcast(&rp->cond);
				rc = OK;
			}
			pthread_mutex_unlock(&rp->mu);
		}
		if (rc == OK)
			*out = replay_json(rp);
		else
			snprintf(err, errcap, "no replay of %s is running", name);
		pthread_mutex_unlock(&fn->rp_mu);
	}
	pthread_mutex_unlock(&rt->mu);
	return rc;
}

void rt_replay_resume(rt_fn_t *fn, rt_replay_t *rp)
{
	pthread_mutex_lock(&fn->rp_mu);
	ASSERT(fn->replay == NULL);
	fn->replay = rp;
	pthread_mutex_unlock(&fn->rp_mu);
	if (pthread_create(&rp->thread, NULL, replay_main, rp) == 0) {
		rp->thread_started = true;
	} else {
		record_remove(fn->rt, fn->def->name);
		set_state(rp, RP_FAILED, "cannot start a thread");
	}
}
