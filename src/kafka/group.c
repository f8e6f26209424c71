/*
 * group.c -- the consumer-group coordinator: membership, rebalances, assignments, committed offsets.
 *
 * Purpose: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
 * DescribeGroups and DeleteGroups for every group, on one dedicated thread with its own loop, so the
 * state machine needs no locks. A connection's loop hands a decoded request over (kreq->task, pending++);
 * the coordinator answers it at once or parks it (JoinGroup until the rebalance completes, SyncGroup until
 * the leader's assignment arrives) and hands it back.
 *
 * States (Kafka's): EMPTY -join-> PREPARING (rebalance) -all joined or timeout-> COMPLETING (awaiting the
 * leader's SyncGroup) -leader syncs-> STABLE -join/leave/expiry-> PREPARING ...; a group with no members
 * is EMPTY; DEAD once deleted. Transitions: prepare_rebalance, complete_join, complete_sync, remove_member.
 * Committed offsets are written to meta.db (SQLite, synchronous=FULL) before OffsetCommit answers, and are
 * loaded at start, so they survive restarts.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/thread.h"
#include "core/compat.h"
#include "core/fl_assert.h"
#include "core/log.h"
#include "kafka/kafka_int.h"
#include "storage/meta.h"

enum { G_EMPTY, G_PREPARING, G_COMPLETING, G_STABLE, G_DEAD };
static const char *const state_names[] = { "Empty", "PreparingRebalance", "CompletingRebalance", "Stable",
					   "Dead" };

#define SESSION_MIN_MS 1000

typedef struct group group_t;

typedef struct {
	char *name;
	buf_t meta;
} gproto_t;

typedef struct member {
	group_t *g;
	char *id, *instance_id, *client_id, *client_host;
	int32_t session_ms, rebalance_ms;
	gproto_t *protos;
	int nprotos;
	buf_t assignment;
	kreq_t *join_req, *sync_req;
	loop_timer_t session_timer;
} member_t;

typedef struct {
	char *topic;
	int32_t partition;
	int64_t offset, commit_ms;
	char *metadata;
} goffset_t;

struct group {
	coord_t *co;
	char *id;
	int state;
	int32_t generation;
	char *ptype, *protocol, *leader;
	member_t **members;
	int n;
	char **pending; /* member ids handed out with MEMBER_ID_REQUIRED, not joined yet */
	int npending;
	loop_timer_t rebalance_timer;
	bool initial_delay; /* the first rebalance of an empty group waits for more members */
	goffset_t *offs;
	int noffs;
};

struct coord {
	kafka_server_t *srv;
	meta_t *meta;
	loop_t *loop;
	pthread_t thread;
	group_t **groups;
	int ngroups;
	uint64_t next_id;
};

/* ---------------------------------------------------------------- small helpers */

static char *sdup(slice_t s)
{
	char *p = malloc(s.len + 1);
	ASSERT(p != NULL);
	if (s.len > 0) /* a null string's ptr may be NULL */
		memcpy(p, s.ptr, s.len);
	p[s.len] = 0;
	return p;
}

static bool seq(const char *a, slice_t b)
{
	return a != NULL && strlen(a) == b.len && (b.len == 0 || memcmp(a, b.ptr, b.len) == 0);
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Hands a request back to its connection's loop, which finishes it. */
static void back_on_conn(loop_task_t *t)
{
	kreq_t *req = t->data;
	kreq_async_done(req, kreq_finish);
}

static void reply(kreq_t *req)
{
	req->task.cb = back_on_conn;
	req->task.data = req;
	loop_post(kreq_loop(req), &req->task);
}

static group_t *group_find(coord_t *co, slice_t id)
{
	for (int i = 0; i < co->ngroups; i++)
		if (seq(co->groups[i]->id, id))
			return co->groups[i];
	return NULL;
}

static void on_rebalance_timeout(loop_timer_t *t);

static group_t *group_get(coord_t *co, slice_t id)
{
	group_t *g = group_find(co, id);
	if (g != NULL)
		return g;
	g = calloc(1, sizeof *g);
	ASSERT(g != NULL);
	g->co = co;
	g->id = sdup(id);
	g->state = G_EMPTY;
	g->rebalance_timer.cb = on_rebalance_timeout;
	g->rebalance_timer.data = g;
	co->groups = realloc(co->groups, (size_t)(co->ngroups + 1) * sizeof *co->groups);
	ASSERT(co->groups != NULL);
	co->groups[co->ngroups++] = g;
	return g;
}

static member_t *member_find(group_t *g, slice_t id)
{
	for (int i = 0; i < g->n; i++)
		if (seq(g->members[i]->id, id))
			return g->members[i];
	return NULL;
}

static void member_free(member_t *m)
{
	for (int i = 0; i < m->nprotos; i++) {
		free(m->protos[i].name);
		buf_free(&m->protos[i].meta);
	}
	free(m->protos);
	buf_free(&m->assignment);
	free(m->id);
	free(m->instance_id);
	free(m->client_id);
	free(m->client_host);
	free(m);
}

/* An empty ConsumerProtocol assignment (kafka-python cannot decode zero bytes). */
static void empty_assignment(const group_t *g, buf_t *b)
{
	if (g->ptype != NULL && strcmp(g->ptype, "consumer") == 0) {
		kw_i16(b, 0);  /* version */
		kw_i32(b, 0);  /* no topics */
		kw_i32(b, -1); /* user data: null */
	}
}

/* ---------------------------------------------------------------- responses */

static void join_response(kreq_t *req, int16_t err, const group_t *g, const char *member_id, bool leader_view)
{
	buf_t *b = &req->resp.mem;
	int v = req->api_version;
	kresp_begin(req);
	if (v >= 2)
		kw_i32(b, 0);
	kw_i16(b, err);
	kw_i32(b, err ? -1 : g->generation);
	kw_cstring(b, err || g->protocol == NULL ? "" : g->protocol);
	kw_cstring(b, err || g->leader == NULL ? "" : g->leader);
	kw_cstring(b, member_id ? member_id : "");
	if (!leader_view || err) {
		kw_i32(b, 0);
		return;
	}
	kw_i32(b, g->n);
	for (int i = 0; i < g->n; i++) {
		member_t *m = g->members[i];
		kw_cstring(b, m->id);
		if (v >= 5)
			kw_nstring(b, m->instance_id);
		const buf_t *meta = NULL;
		for (int k = 0; k < m->nprotos; k++)
			if (strcmp(m->protos[k].name, g->protocol) == 0)
				meta = &m->protos[k].meta;
		kw_i32(b, meta ? (int32_t)meta->len : 0);
		if (meta)
			buf_append(b, meta->data, meta->len);
	}
}

static void simple_response(kreq_t *req, int16_t err, bool throttle_first)
{
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (throttle_first)
		kw_i32(b, 0);
	kw_i16(b, err);
}

static void sync_response(kreq_t *req, int16_t err, const buf_t *assignment)
{
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (req->api_version >= 1)
		kw_i32(b, 0);
	kw_i16(b, err);
	kw_i32(b, assignment && !err ? (int32_t)assignment->len : 0);
	if (assignment && !err)
		buf_append(b, assignment->data, assignment->len);
}

/* ---------------------------------------------------------------- the state machine */

static void session_start(member_t *m);

static void remove_member(group_t *g, member_t *m, const char *why);

static void complete_join(group_t *g)
{
	loop_timer_stop(g->co->loop, &g->rebalance_timer);
	/* Members that did not rejoin in time are dropped. */
	for (int i = g->n - 1; i >= 0; i--)
		if (g->members[i]->join_req == NULL)
			remove_member(g, g->members[i], "did not rejoin within the rebalance timeout");
	if (g->n == 0) {
		g->state = G_EMPTY;
		g->generation++;
		return;
	}
	/* The protocol: the first of the leader-candidate's preferences that every member supports. */
	free(g->protocol);
	g->protocol = NULL;
	member_t *first = g->members[0];
	for (int k = 0; k < first->nprotos && g->protocol == NULL; k++) {
		bool all = true;
		for (int i = 1; i < g->n && all; i++) {
			bool has = false;
			for (int j = 0; j < g->members[i]->nprotos; j++)
				has |= strcmp(g->members[i]->protos[j].name, first->protos[k].name) == 0;
			all = has;
		}
		if (all)
			g->protocol = strdup(first->protos[k].name);
	}
	g->generation++;
	if (g->leader == NULL || member_find(g, slice_cstr(g->leader)) == NULL) {
		free(g->leader);
		g->leader = strdup(first->id);
	}
	g->state = G_COMPLETING;
	for (int i = 0; i < g->n; i++) {
		member_t *m = g->members[i];
		kreq_t *req = m->join_req;
		m->join_req = NULL;
		buf_free(&m->assignment);
		join_response(req, KERR_NONE, g, m->id, strcmp(m->id, g->leader) == 0);
		reply(req);
		session_start(m);
	}
	log_info("group %s: generation %" PRId32 " with %d members, protocol %s, leader %s", g->id, g->generation,
		 g->n, g->protocol ? g->protocol : "-", g->leader);
}

static bool all_joined(const group_t *g)
{
	for (int i = 0; i < g->n; i++)
		if (g->members[i]->join_req == NULL)
			return false;
	return g->n > 0;
}

static void on_rebalance_timeout(loop_timer_t *t)
{
	group_t *g = t->data;
	g->initial_delay = false;
	if (g->state == G_PREPARING)
		complete_join(g);
}

static void prepare_rebalance(group_t *g, int64_t delay_ms)
{
	if (g->state == G_COMPLETING) {
		/* Syncs waiting for the leader are told to rejoin. */
		for (int i = 0; i < g->n; i++)
			if (g->members[i]->sync_req) {
				sync_response(g->members[i]->sync_req, KERR_REBALANCE_IN_PROGRESS, NULL);
				reply(g->members[i]->sync_req);
				g->members[i]->sync_req = NULL;
			}
	}
	if (g->state != G_PREPARING) {
		int32_t timeout = 0;
		for (int i = 0; i < g->n; i++)
			if (g->members[i]->rebalance_ms > timeout)
				timeout = g->members[i]->rebalance_ms;
		g->state = G_PREPARING;
		g->initial_delay = delay_ms > 0;
		loop_timer_start(g->co->loop, &g->rebalance_timer, delay_ms > 0 ? delay_ms : timeout);
	}
}

static void maybe_complete_join(group_t *g)
{
	/* An empty group waits a moment for more members (Kafka's initial rebalance delay). */
	if (g->state == G_PREPARING && all_joined(g) && !g->initial_delay)
		complete_join(g);
}

static void remove_member(group_t *g, member_t *m, const char *why)
{
	log_info("group %s: member %s leaves (%s)", g->id, m->id, why);
	loop_timer_stop(g->co->loop, &m->session_timer);
	if (m->join_req) {
		join_response(m->join_req, KERR_UNKNOWN_MEMBER_ID, g, m->id, false);
		reply(m->join_req);
	}
	if (m->sync_req) {
		sync_response(m->sync_req, KERR_UNKNOWN_MEMBER_ID, NULL);
		reply(m->sync_req);
	}
	for (int i = 0; i < g->n; i++)
		if (g->members[i] == m) {
			g->members[i] = g->members[--g->n];
			break;
		}
	if (g->leader && strcmp(g->leader, m->id) == 0) {
		free(g->leader);
		g->leader = NULL;
	}
	member_free(m);
}

/* A member is gone (leave, expiry): the others rebalance. */
static void member_gone(group_t *g, member_t *m, const char *why)
{
	remove_member(g, m, why);
	if (g->n == 0) {
		loop_timer_stop(g->co->loop, &g->rebalance_timer);
		g->state = G_EMPTY;
		free(g->protocol);
		g->protocol = NULL;
		return;
	}
	if (g->state == G_STABLE || g->state == G_COMPLETING)
		prepare_rebalance(g, 0);
	else
		maybe_complete_join(g);
}

static void on_session_expired(loop_timer_t *t)
{
	member_t *m = t->data;
	if (m->join_req != NULL) /* waiting in a rebalance: the rebalance timeout governs */
		return;
	member_gone(m->g, m, "session timeout");
}

static void session_start(member_t *m)
{
	m->session_timer.cb = on_session_expired;
	m->session_timer.data = m;
	loop_timer_start(m->g->co->loop, &m->session_timer, m->session_ms);
}

/* ---------------------------------------------------------------- JoinGroup */

static void do_join(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	slice_t gid = kr_string(r).s;
	int32_t session_ms = reader_i32(r);
	int32_t rebalance_ms = v >= 1 ? reader_i32(r) : session_ms;
	slice_t mid = kr_string(r).s;
	kstr_t instance = { { NULL, 0 }, true };
	if (v >= 5)
		instance = kr_string(r);
	slice_t ptype = kr_string(r).s;
	int32_t np = kr_array(r);
	reader_t protos = *r;
	for (int32_t i = 0; i < np; i++) {
		kr_string(r);
		kr_bytes(r);
	}
	if (r->err != OK || np < 0) {
		join_response(req, KERR_INVALID_REQUEST, NULL, NULL, false);
		reply(req);
		return;
	}
	if (gid.len == 0) {
		join_response(req, KERR_INVALID_GROUP_ID, NULL, NULL, false);
		reply(req);
		return;
	}
	int32_t max_ms = co->srv->opts.group_max_session_ms > 0 ? co->srv->opts.group_max_session_ms : 1800000;
	if (session_ms < SESSION_MIN_MS || session_ms > max_ms) {
		join_response(req, KERR_INVALID_SESSION_TIMEOUT, NULL, NULL, false);
		reply(req);
		return;
	}
	group_t *g = group_get(co, gid);
	/* The protocol type must match, and the member must share a protocol with the group. */
	bool compatible = g->n == 0 || g->ptype == NULL || seq(g->ptype, ptype);
	if (compatible && g->n > 0 && np > 0) {
		bool shared = false;
		reader_t pr = protos;
		for (int32_t i = 0; i < np && !shared; i++) {
			slice_t name = kr_string(&pr).s;
			kr_bytes(&pr);
			bool all = true;
			for (int k = 0; k < g->n && all; k++) {
				bool has = false;
				for (int j = 0; j < g->members[k]->nprotos; j++)
					has |= seq(g->members[k]->protos[j].name, name);
				all = has || (mid.len > 0 && seq(g->members[k]->id, mid));
			}
			shared = all;
		}
		compatible = shared;
	}
	if (!compatible || np == 0) {
		join_response(req, KERR_INCONSISTENT_GROUP_PROTOCOL, g, NULL, false);
		reply(req);
		return;
	}
	member_t *m = mid.len ? member_find(g, mid) : NULL;
	if (mid.len == 0 || (m == NULL && mid.len > 0)) {
		bool was_pending = false;
		for (int i = 0; i < g->npending && mid.len > 0; i++)
			if (seq(g->pending[i], mid)) {
				free(g->pending[i]);
				g->pending[i] = g->pending[--g->npending];
				was_pending = true;
				break;
			}
		if (mid.len > 0 && !was_pending) {
			join_response(req, KERR_UNKNOWN_MEMBER_ID, g, NULL, false);
			reply(req);
			return;
		}
		char idbuf[300];
		if (mid.len == 0) {
			snprintf(idbuf, sizeof idbuf, "%.*s-%016" PRIx64, (int)(req->client_id.len > 200 ? 200 : req->client_id.len),
				 (const char *)req->client_id.ptr, ++co->next_id ^ (uint64_t)wall_ms() << 20);
			if (v >= 4 && instance.null) {
				/* KIP-394: hand out the id, and let the member come back with it. */
				g->pending = realloc(g->pending, (size_t)(g->npending + 1) * sizeof *g->pending);
				g->pending[g->npending++] = strdup(idbuf);
				join_response(req, KERR_MEMBER_ID_REQUIRED, g, idbuf, false);
				reply(req);
				return;
			}
		} else {
			snprintf(idbuf, sizeof idbuf, "%.*s", (int)(mid.len > 299 ? 299 : mid.len), (const char *)mid.ptr);
		}
		m = calloc(1, sizeof *m);
		ASSERT(m != NULL);
		m->g = g;
		m->id = strdup(idbuf);
		m->client_id = sdup(req->client_id);
		m->client_host = strdup(req->conn->peer);
		g->members = realloc(g->members, (size_t)(g->n + 1) * sizeof *g->members);
		g->members[g->n++] = m;
		if (g->ptype == NULL)
			g->ptype = sdup(ptype);
	}
	if (m->join_req != NULL) { /* a duplicate join replaces the older one */
		join_response(m->join_req, KERR_REBALANCE_IN_PROGRESS, g, m->id, false);
		reply(m->join_req);
	}
	free(m->instance_id);
	m->instance_id = instance.null ? NULL : sdup(instance.s);
	m->session_ms = session_ms;
	m->rebalance_ms = rebalance_ms > 0 && rebalance_ms < max_ms ? rebalance_ms : rebalance_ms > 0 ? max_ms : session_ms;
	for (int i = 0; i < m->nprotos; i++) {
		free(m->protos[i].name);
		buf_free(&m->protos[i].meta);
	}
	free(m->protos);
	m->protos = calloc((size_t)np, sizeof *m->protos);
	m->nprotos = np;
	for (int32_t i = 0; i < np; i++) {
		m->protos[i].name = sdup(kr_string(&protos).s);
		slice_t meta = kr_bytes(&protos).s;
		buf_append(&m->protos[i].meta, meta.ptr, meta.len);
	}
	m->join_req = req;
	loop_timer_stop(co->loop, &m->session_timer);
	if (g->state == G_EMPTY && g->generation == 0 && co->srv->opts.group_initial_delay_ms > 0)
		prepare_rebalance(g, co->srv->opts.group_initial_delay_ms);
	else if (g->state != G_PREPARING)
		prepare_rebalance(g, 0);
	maybe_complete_join(g);
}

/* ---------------------------------------------------------------- SyncGroup, Heartbeat, LeaveGroup */

/* Common checks: the member exists and the generation matches. */
static int16_t check_member(group_t *g, slice_t mid, int32_t generation, member_t **out)
{
	member_t *m = g ? member_find(g, mid) : NULL;
	if (m == NULL)
		return KERR_UNKNOWN_MEMBER_ID;
	if (generation != g->generation)
		return KERR_ILLEGAL_GENERATION;
	*out = m;
	return KERR_NONE;
}

static void complete_sync(group_t *g)
{
	g->state = G_STABLE;
	for (int i = 0; i < g->n; i++) {
		member_t *m = g->members[i];
		if (m->assignment.len == 0)
			empty_assignment(g, &m->assignment);
		if (m->sync_req) {
			sync_response(m->sync_req, KERR_NONE, &m->assignment);
			reply(m->sync_req);
			m->sync_req = NULL;
		}
	}
}

static void do_sync(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	slice_t gid = kr_string(r).s;
	int32_t generation = reader_i32(r);
	slice_t mid = kr_string(r).s;
	if (req->api_version >= 3)
		kr_string(r);
	int32_t na = kr_array(r);
	reader_t assigns = *r;
	for (int32_t i = 0; i < na; i++) {
		kr_string(r);
		kr_bytes(r);
	}
	group_t *g = group_find(co, gid);
	member_t *m = NULL;
	int16_t err = r->err != OK ? KERR_INVALID_REQUEST : check_member(g, mid, generation, &m);
	if (err == KERR_NONE && g->state == G_PREPARING)
		err = KERR_REBALANCE_IN_PROGRESS;
	if (err != KERR_NONE) {
		sync_response(req, err, NULL);
		reply(req);
		return;
	}
	session_start(m);
	if (g->state == G_STABLE) {
		sync_response(req, KERR_NONE, &m->assignment);
		reply(req);
		return;
	}
	if (m->sync_req) {
		sync_response(m->sync_req, KERR_REBALANCE_IN_PROGRESS, NULL);
		reply(m->sync_req);
	}
	m->sync_req = req;
	if (strcmp(m->id, g->leader) == 0) {
		for (int32_t i = 0; i < na; i++) {
			slice_t who = kr_string(&assigns).s;
			slice_t a = kr_bytes(&assigns).s;
			member_t *target = member_find(g, who);
			if (target != NULL) {
				target->assignment.len = 0;
				buf_append(&target->assignment, a.ptr, a.len);
			}
		}
		complete_sync(g);
	}
}

static void do_heartbeat(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	slice_t gid = kr_string(r).s;
	int32_t generation = reader_i32(r);
	slice_t mid = kr_string(r).s;
	group_t *g = group_find(co, gid);
	member_t *m = NULL;
	int16_t err = check_member(g, mid, generation, &m);
	if (err == KERR_NONE) {
		session_start(m);
		if (g->state == G_PREPARING)
			err = KERR_REBALANCE_IN_PROGRESS;
	}
	simple_response(req, err, req->api_version >= 1);
	reply(req);
}

static void do_leave(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	slice_t gid = kr_string(r).s;
	slice_t mid = kr_string(r).s;
	group_t *g = group_find(co, gid);
	member_t *m = g ? member_find(g, mid) : NULL;
	if (m != NULL)
		member_gone(g, m, "left the group");
	simple_response(req, m ? KERR_NONE : KERR_UNKNOWN_MEMBER_ID, req->api_version >= 1);
	reply(req);
}

/* ---------------------------------------------------------------- offsets */

static goffset_t *offset_find(group_t *g, slice_t topic, int32_t partition)
{
	for (int i = 0; i < g->noffs; i++)
		if (g->offs[i].partition == partition && seq(g->offs[i].topic, topic))
			return &g->offs[i];
	return NULL;
}

static void offset_set(group_t *g, const char *topic, int32_t partition, int64_t offset, const char *metadata,
		       int64_t commit_ms)
{
	goffset_t *o = offset_find(g, slice_cstr(topic), partition);
	if (o == NULL) {
		g->offs = realloc(g->offs, (size_t)(g->noffs + 1) * sizeof *g->offs);
		ASSERT(g->offs != NULL);
		o = &g->offs[g->noffs++];
		o->topic = strdup(topic);
		o->partition = partition;
		o->metadata = NULL;
	}
	free(o->metadata);
	o->metadata = strdup(metadata ? metadata : "");
	o->offset = offset;
	o->commit_ms = commit_ms;
}

static void do_offset_commit(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	slice_t gid = kr_string(r).s;
	int32_t generation = reader_i32(r);
	slice_t mid = kr_string(r).s;
	if (v >= 2 && v <= 4)
		reader_i64(r); /* retention_time_ms */
	int32_t nt = kr_array(r);
	reader_t body = *r;
	for (int32_t t = 0; t < nt && r->err == OK; t++) {
		kr_string(r);
		int32_t np = kr_array(r);
		for (int32_t i = 0; i < np && r->err == OK; i++) {
			reader_i32(r);
			reader_i64(r);
			kr_string(r);
		}
	}
	buf_t *b = &req->resp.mem;
	if (r->err != OK || nt < 0 || gid.len == 0) {
		kresp_begin(req);
		if (v >= 3)
			kw_i32(b, 0);
		kw_i32(b, 0);
		reply(req);
		return;
	}
	group_t *g = group_get(co, gid);
	int16_t gerr = KERR_NONE;
	if (generation >= 0 || g->n > 0) { /* else a "simple" commit (assign() users), accepted as is */
		member_t *m = NULL;
		gerr = check_member(g, mid, generation, &m);
		if (gerr == KERR_NONE && g->state == G_COMPLETING)
			gerr = KERR_REBALANCE_IN_PROGRESS;
		if (gerr == KERR_NONE)
			session_start(m);
	}
	kresp_begin(req);
	if (v >= 3)
		kw_i32(b, 0);
	kw_i32(b, nt);
	int64_t now = wall_ms();
	for (int32_t t = 0; t < nt; t++) {
		slice_t topic = kr_string(&body).s;
		int32_t np = kr_array(&body);
		kw_string(b, topic);
		kw_i32(b, np);
		char *tname = sdup(topic);
		for (int32_t i = 0; i < np; i++) {
			int32_t part = reader_i32(&body);
			int64_t off = reader_i64(&body);
			kstr_t md = kr_string(&body);
			int16_t err = gerr;
			char *mds = md.null ? strdup("") : sdup(md.s);
			if (err == KERR_NONE && (strlen(mds) > 4096))
				err = 12; /* OFFSET_METADATA_TOO_LARGE */
			if (err == KERR_NONE) {
				char *gname = g->id;
				if (storage_commit_offset(co->srv->st, gname, tname, part, off, mds) == OK)
					offset_set(g, tname, part, off, mds, now);
				else
					err = KERR_UNKNOWN_SERVER_ERROR;
			}
			free(mds);
			kw_i32(b, part);
			kw_i16(b, err);
		}
		free(tname);
	}
	reply(req);
}

static void write_offset(buf_t *b, group_t *g, slice_t topic, int32_t part)
{
	goffset_t *o = g ? offset_find(g, topic, part) : NULL;
	kw_i32(b, part);
	kw_i64(b, o ? o->offset : -1);
	kw_cstring(b, o ? o->metadata : "");
	kw_i16(b, KERR_NONE);
}

static void do_offset_fetch(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	slice_t gid = kr_string(r).s;
	int32_t nt = kr_array(r);
	reader_t body = *r;
	for (int32_t t = 0; t < nt && r->err == OK; t++) {
		kr_string(r);
		int32_t np = kr_array(r);
		for (int32_t i = 0; i < np; i++)
			reader_i32(r);
	}
	group_t *g = group_find(co, gid);
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (v >= 3)
		kw_i32(b, 0);
	if (r->err != OK) {
		kw_i32(b, 0);
		if (v >= 2)
			kw_i16(b, KERR_INVALID_REQUEST);
		reply(req);
		return;
	}
	if (nt < 0) { /* all committed offsets of the group, grouped by topic */
		size_t at = b->len;
		int32_t topics = 0;
		kw_i32(b, 0);
		for (int i = 0; g && i < g->noffs; i++) {
			bool seen = false;
			for (int j = 0; j < i && !seen; j++)
				seen = strcmp(g->offs[j].topic, g->offs[i].topic) == 0;
			if (seen)
				continue;
			topics++;
			kw_cstring(b, g->offs[i].topic);
			int32_t np = 0;
			for (int j = i; j < g->noffs; j++)
				np += strcmp(g->offs[j].topic, g->offs[i].topic) == 0;
			kw_i32(b, np);
			for (int j = i; j < g->noffs; j++)
				if (strcmp(g->offs[j].topic, g->offs[i].topic) == 0)
					write_offset(b, g, slice_cstr(g->offs[j].topic), g->offs[j].partition);
		}
		be32_store(b->data + at, (uint32_t)topics);
	} else {
		kw_i32(b, nt);
		for (int32_t t = 0; t < nt; t++) {
			slice_t topic = kr_string(&body).s;
			int32_t np = kr_array(&body);
			kw_string(b, topic);
			kw_i32(b, np);
			for (int32_t i = 0; i < np; i++)
				write_offset(b, g, topic, reader_i32(&body));
		}
	}
	if (v >= 2)
		kw_i16(b, KERR_NONE);
	reply(req);
}

/* ---------------------------------------------------------------- ListGroups, DescribeGroups, DeleteGroups */

static void do_list_groups(coord_t *co, kreq_t *req)
{
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (req->api_version >= 1)
		kw_i32(b, 0);
	kw_i16(b, KERR_NONE);
	size_t at = b->len;
	int32_t n = 0;
	kw_i32(b, 0);
	for (int i = 0; i < co->ngroups; i++) {
		group_t *g = co->groups[i];
		if (g->state == G_DEAD)
			continue;
		kw_cstring(b, g->id);
		kw_cstring(b, g->ptype ? g->ptype : "");
		n++;
	}
	be32_store(b->data + at, (uint32_t)n);
	reply(req);
}

static void do_describe_groups(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	int32_t n = kr_array(r);
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (req->api_version >= 1)
		kw_i32(b, 0);
	if (r->err != OK || n < 0)
		n = 0;
	kw_i32(b, n);
	for (int32_t i = 0; i < n; i++) {
		slice_t gid = kr_string(r).s;
		group_t *g = r->err == OK ? group_find(co, gid) : NULL;
		kw_i16(b, r->err == OK ? KERR_NONE : KERR_INVALID_REQUEST);
		kw_string(b, gid);
		kw_cstring(b, state_names[g ? g->state : G_DEAD]);
		kw_cstring(b, g && g->ptype ? g->ptype : "");
		kw_cstring(b, g && g->protocol ? g->protocol : "");
		kw_i32(b, g ? g->n : 0);
		for (int k = 0; g && k < g->n; k++) {
			member_t *m = g->members[k];
			kw_cstring(b, m->id);
			kw_cstring(b, m->client_id ? m->client_id : "");
			kw_cstring(b, m->client_host ? m->client_host : "");
			const buf_t *meta = NULL;
			for (int j = 0; j < m->nprotos; j++)
				if (g->protocol && strcmp(m->protos[j].name, g->protocol) == 0)
					meta = &m->protos[j].meta;
			kw_i32(b, meta ? (int32_t)meta->len : 0);
			if (meta)
				buf_append(b, meta->data, meta->len);
			kw_i32(b, (int32_t)m->assignment.len);
			buf_append(b, m->assignment.data, m->assignment.len);
		}
	}
	reply(req);
}

static void group_free(group_t *g)
{
	while (g->n > 0)
		remove_member(g, g->members[g->n - 1], "shutdown");
	loop_timer_stop(g->co->loop, &g->rebalance_timer);
	for (int i = 0; i < g->npending; i++)
		free(g->pending[i]);
	for (int i = 0; i < g->noffs; i++) {
		free(g->offs[i].topic);
		free(g->offs[i].metadata);
	}
	free(g->pending);
	free(g->offs);
	free(g->members);
	free(g->ptype);
	free(g->protocol);
	free(g->leader);
	free(g->id);
	free(g);
}

static void do_delete_groups(coord_t *co, kreq_t *req)
{
	reader_t *r = &req->r;
	int32_t n = kr_array(r);
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	kw_i32(b, 0);
	if (r->err != OK || n < 0)
		n = 0;
	kw_i32(b, n);
	for (int32_t i = 0; i < n; i++) {
		slice_t gid = kr_string(r).s;
		group_t *g = group_find(co, gid);
		int16_t err = KERR_NONE;
		if (g == NULL)
			err = KERR_GROUP_ID_NOT_FOUND;
		else if (g->n > 0)
			err = KERR_NON_EMPTY_GROUP;
		else if (meta_group_delete(co->meta, g->id) != OK)
			err = KERR_UNKNOWN_SERVER_ERROR;
		if (err == KERR_NONE) {
			for (int k = 0; k < co->ngroups; k++)
				if (co->groups[k] == g) {
					co->groups[k] = co->groups[--co->ngroups];
					break;
				}
			group_free(g);
		}
		kw_string(b, gid);
		kw_i16(b, err);
	}
	reply(req);
}

/* ---------------------------------------------------------------- plumbing */

static void on_coord_task(loop_task_t *t)
{
	kreq_t *req = t->data;
	coord_t *co = kreq_server(req)->coord;
	switch (req->api_key) {
	case 11: do_join(co, req); break;
	case 14: do_sync(co, req); break;
	case 12: do_heartbeat(co, req); break;
	case 13: do_leave(co, req); break;
	case 8: do_offset_commit(co, req); break;
	case 9: do_offset_fetch(co, req); break;
	case 16: do_list_groups(co, req); break;
	case 15: do_describe_groups(co, req); break;
	case 42: do_delete_groups(co, req); break;
	default: ASSERT(!"not a group API");
	}
}

void kapi_group(kreq_t *req)
{
	coord_t *co = kreq_server(req)->coord;
	ASSERT(co != NULL);
	if (atomic_load(&kreq_server(req)->coord_closing)) {
		kreq_malformed(req); /* shutting down: the client reconnects elsewhere (or later) */
		return;
	}
	req->pending++;
	req->task.cb = on_coord_task;
	req->task.data = req;
	loop_post(co->loop, &req->task);
}

static void *coord_main(void *arg)
{
	coord_t *co = arg;
	fl_thread_name("fl-group-coord");
	loop_run(co->loop);
	return NULL;
}

static void load_offset(void *arg, const char *group, const char *topic, int32_t partition, int64_t offset,
			const char *metadata, int64_t commit_ms)
{
	coord_t *co = arg;
	offset_set(group_get(co, slice_cstr(group)), topic, partition, offset, metadata, commit_ms);
}

err_t coord_start(kafka_server_t *s, coord_t **out)
{
	coord_t *co = calloc(1, sizeof *co);
	ASSERT(co != NULL);
	co->srv = s;
	co->meta = storage_meta(s->st);
	err_t rc = loop_new(&co->loop);
	if (rc == OK)
		rc = meta_offset_list(co->meta, load_offset, co);
	if (rc == OK)
		rc = -pthread_create(&co->thread, NULL, coord_main, co);
	if (rc != OK) {
		for (int i = 0; i < co->ngroups; i++)
			group_free(co->groups[i]);
		free(co->groups);
		loop_free(co->loop);
		free(co);
		return rc;
	}
	*out = co;
	return OK;
}

static void shutdown_task(loop_task_t *t)
{
	coord_t *co = t->data;
	/* Parked joins and syncs are answered so their connections can close. */
	for (int i = 0; i < co->ngroups; i++)
		group_free(co->groups[i]);
	co->ngroups = 0;
	loop_stop(co->loop);
}

void coord_stop(coord_t *co)
{
	if (co == NULL)
		return;
	loop_task_t t = { NULL, shutdown_task, co };
	loop_post(co->loop, &t);
	pthread_join(co->thread, NULL);
	free(co->groups);
	loop_free(co->loop);
	free(co);
}
