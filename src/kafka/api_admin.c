/* api_admin.c -- CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/fl_assert.h"
#include "kafka/kafka_int.h"

/* A NUL-terminated copy of a wire string, truncated to cap-1 bytes; false if it was too long or had a NUL. */
static bool cstr(slice_t s, char *out, size_t cap)
{
	if (s.len >= cap)
		return false;
	if (s.len > 0) /* a null or empty wire string has no bytes (ptr may be NULL) */
		memcpy(out, s.ptr, s.len);
	out[s.len] = 0;
	return strlen(out) == s.len;
}

static const char *const topic_keys[] = { "cleanup.policy",        "index.interval.bytes",  "local.retention.bytes",
					  "local.retention.ms",    "max.message.bytes",     "message.timestamp.type",
					  "remote.storage.enable", "retention.bytes",       "retention.ms",
					  "segment.bytes",         "segment.ms" };
#define NKEYS ((int)(sizeof topic_keys / sizeof topic_keys[0]))

static void config_value(const partition_config_t *cfg, const char *key, char *out, size_t cap)
{
	if (strcmp(key, "cleanup.policy") == 0)
		snprintf(out, cap, "delete");
	else if (strcmp(key, "index.interval.bytes") == 0)
		snprintf(out, cap, "%" PRId32, cfg->index_interval_bytes);
	else if (strcmp(key, "max.message.bytes") == 0)
		snprintf(out, cap, "%" PRId32, cfg->max_message_bytes);
	else if (strcmp(key, "message.timestamp.type") == 0)
		snprintf(out, cap, "%s", cfg->log_append_time ? "LogAppendTime" : "CreateTime");
	else if (strcmp(key, "local.retention.bytes") == 0)
		snprintf(out, cap, "%" PRId64, cfg->local_retention_bytes);
	else if (strcmp(key, "local.retention.ms") == 0)
		snprintf(out, cap, "%" PRId64, cfg->local_retention_ms);
	else if (strcmp(key, "remote.storage.enable") == 0)
		snprintf(out, cap, "%s", cfg->remote_storage ? "true" : "false");
	else if (strcmp(key, "retention.bytes") == 0)
		snprintf(out, cap, "%" PRId64, cfg->retention_bytes);
	else if (strcmp(key, "retention.ms") == 0)
		snprintf(out, cap, "%" PRId64, cfg->retention_ms);
	else if (strcmp(key, "segment.bytes") == 0)
		snprintf(out, cap, "%" PRId64, cfg->segment_bytes);
	else
		snprintf(out, cap, "%" PRId64, cfg->segment_ms);
}

/* ---------------------------------------------------------------- CreateTopics */

#define CONFIGS_MAX 64

void kapi_create_topics(kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	int32_t n = kr_array(r);
	if (r->err != OK || n < 0) {
		kreq_malformed(req);
		return;
	}
	/* The request is decoded twice: first to validate its shape, then to act. */
	reader_t probe = *r;
	for (int32_t i = 0; i < n && probe.err == OK; i++) {
		kr_string(&probe);
		reader_i32(&probe);
		reader_i16(&probe);
		int32_t na = kr_array(&probe);
		for (int32_t a = 0; a < na && probe.err == OK; a++) {
			reader_i32(&probe);
			int32_t nb = kr_array(&probe);
			for (int32_t k = 0; k < nb; k++)
				reader_i32(&probe);
		}
		int32_t nc = kr_array(&probe);
		for (int32_t k = 0; k < nc && probe.err == OK; k++) {
			kr_string(&probe);
			kr_string(&probe);
		}
	}
	reader_i32(&probe); /* timeout_ms */
	bool validate_only = v >= 1 ? reader_u8(&probe) != 0 : false;
	if (probe.err != OK) {
		kreq_malformed(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (v >= 2)
		kw_i32(b, 0);
	kw_i32(b, n);
	kafka_server_t *s = kreq_server(req);
	for (int32_t i = 0; i < n; i++) {
		slice_t name = kr_string(r).s;
		int32_t partitions = reader_i32(r);
		int16_t rf = reader_i16(r);
		int32_t na = kr_array(r);
		bool bad_assignment = false;
		for (int32_t a = 0; a < na; a++) {
			reader_i32(r);
			int32_t nb = kr_array(r);
			for (int32_t k = 0; k < nb; k++)
				bad_assignment |= reader_i32(r) != s->opts.node_id;
			bad_assignment |= nb != 1;
		}
		int32_t nc = kr_array(r);
		topic_kv_t kv[CONFIGS_MAX];
		char kvbuf[CONFIGS_MAX][2][256];
		int nkv = 0;
		bool bad_config = nc > CONFIGS_MAX;
		for (int32_t k = 0; k < nc; k++) {
			kstr_t key = kr_string(r), val = kr_string(r);
			if (nkv >= CONFIGS_MAX || val.null)
				continue;
			if (!cstr(key.s, kvbuf[nkv][0], 256) || !cstr(val.s, kvbuf[nkv][1], 256)) {
				bad_config = true;
				continue;
			}
			kv[nkv].key = kvbuf[nkv][0];
			kv[nkv].value = kvbuf[nkv][1];
			nkv++;
		}
		char tname[TOPIC_NAME_MAX + 1];
		int16_t err = KERR_NONE;
		const char *msg = NULL;
		if (na > 0)
			partitions = partitions == -1 ? na : partitions;
		if (partitions == -1)
			partitions = s->opts.default_partitions;
		if (!cstr(name, tname, sizeof tname)) {
			err = KERR_INVALID_TOPIC_EXCEPTION;
			msg = "topic names are 1-249 characters of [A-Za-z0-9._-]";
		} else if (rf != -1 && rf != 1) {
			err = KERR_INVALID_REPLICATION_FACTOR;
			msg = "factlog is a single node: replication factor must be 1";
		} else if (bad_assignment || (na > 0 && na != partitions)) {
			err = KERR_INVALID_REPLICA_ASSIGNMENT;
			msg = "replica assignments must name this node only";
		} else if (partitions < 1 || partitions > TOPIC_PARTITIONS_MAX) {
			err = KERR_INVALID_PARTITIONS;
			msg = "partition count must be 1 to 10000";
		} else if (bad_config) {
			err = KERR_INVALID_CONFIG;
			msg = "config names and values must be under 256 bytes";
		} else {
			partition_config_t probe_cfg;
			partition_config_default(&probe_cfg);
			for (int k = 0; k < nkv && err == KERR_NONE; k++)
				if (topic_config_apply(&probe_cfg, kv[k].key, kv[k].value, &msg) != OK)
					err = KERR_INVALID_CONFIG;
		}
		if (err == KERR_NONE) {
			topic_t *t = storage_topic_get(s->st, tname);
			if (t != NULL) {
				err = KERR_TOPIC_ALREADY_EXISTS;
				msg = "topic already exists";
			}
			topic_put(t);
		}
		if (err == KERR_NONE && !validate_only) {
			err_t rc = storage_topic_create(s->st, tname, partitions, kv, nkv);
			if (rc == ERR_EXISTS) {
				err = KERR_TOPIC_ALREADY_EXISTS;
				msg = "topic already exists";
			} else if (rc == ERR_INVALID) {
				err = KERR_INVALID_TOPIC_EXCEPTION;
				msg = "topic names are 1-249 characters of [A-Za-z0-9._-]";
			} else if (rc != OK) {
				err = KERR_UNKNOWN_SERVER_ERROR;
				msg = err_str(rc);
			}
		}
		kw_string(b, name);
		kw_i16(b, err);
		if (v >= 1)
			kw_nstring(b, err ? msg : NULL);
	}
	kreq_finish(req);
}

/* ---------------------------------------------------------------- DeleteTopics */

void kapi_delete_topics(kreq_t *req)
{
	reader_t *r = &req->r;
	int32_t n = kr_array(r);
	reader_t probe = *r;
	for (int32_t i = 0; i < n; i++)
		kr_string(&probe);
	reader_i32(&probe);
	if (r->err != OK || probe.err != OK || n < 0) {
		kreq_malformed(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (req->api_version >= 1)
		kw_i32(b, 0);
	kw_i32(b, n);
	for (int32_t i = 0; i < n; i++) {
		slice_t name = kr_string(r).s;
		char tname[TOPIC_NAME_MAX + 1];
		int16_t err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
		if (cstr(name, tname, sizeof tname)) {
			err_t rc = storage_topic_delete(kreq_storage(req), tname);
			err = rc == OK ? KERR_NONE : rc == ERR_NOT_FOUND ? KERR_UNKNOWN_TOPIC_OR_PARTITION
								     : KERR_UNKNOWN_SERVER_ERROR;
		}
		kw_string(b, name);
		kw_i16(b, err);
	}
	kreq_finish(req);
}

/* ---------------------------------------------------------------- CreatePartitions */

void kapi_create_partitions(kreq_t *req)
{
	reader_t *r = &req->r;
	int32_t n = kr_array(r);
	reader_t probe = *r;
	for (int32_t i = 0; i < n && probe.err == OK; i++) {
		kr_string(&probe);
		reader_i32(&probe);
		int32_t na = kr_array(&probe);
		for (int32_t a = 0; a < na && probe.err == OK; a++) {
			int32_t nb = kr_array(&probe);
			for (int32_t k = 0; k < nb; k++)
				reader_i32(&probe);
		}
	}
	reader_i32(&probe);
	bool validate_only = reader_u8(&probe) != 0;
	if (r->err != OK || probe.err != OK || n < 0) {
		kreq_malformed(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	kw_i32(b, 0);
	kw_i32(b, n);
	for (int32_t i = 0; i < n; i++) {
		slice_t name = kr_string(r).s;
		int32_t count = reader_i32(r);
		int32_t na = kr_array(r);
		for (int32_t a = 0; a < na; a++) {
			int32_t nb = kr_array(r);
			for (int32_t k = 0; k < nb; k++)
				reader_i32(r);
		}
		char tname[TOPIC_NAME_MAX + 1];
		int16_t err = KERR_NONE;
		const char *msg = NULL;
		topic_t *t = cstr(name, tname, sizeof tname) ? storage_topic_get(kreq_storage(req), tname) : NULL;
		if (t == NULL) {
			err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
			msg = "no such topic";
		} else if (count <= topic_partition_count(t) || count > TOPIC_PARTITIONS_MAX) {
			err = KERR_INVALID_PARTITIONS;
			msg = "the new count must exceed the current one (at most 10000)";
		} else if (!validate_only) {
			err_t rc = storage_topic_add_partitions(kreq_storage(req), tname, count);
			if (rc != OK) {
				err = KERR_INVALID_PARTITIONS;
				msg = err_str(rc);
			}
		}
		topic_put(t);
		kw_string(b, name);
		kw_i16(b, err);
		kw_nstring(b, err ? msg : NULL);
	}
	kreq_finish(req);
}

/* ---------------------------------------------------------------- DescribeConfigs */

enum { RESOURCE_TOPIC = 2, RESOURCE_BROKER = 4 };
enum { SOURCE_DYNAMIC_TOPIC = 1, SOURCE_DEFAULT = 5 };

typedef struct {
	const char *key;
	bool found;
} explicit_ctx_t;

static void find_explicit(void *arg, const char *key, const char *value)
{
	(void)value;
	explicit_ctx_t *c = arg;
	if (strcmp(c->key, key) == 0)
		c->found = true;
}

static bool wanted(reader_t keys, int32_t nkeys, const char *key)
{
	if (nkeys < 0)
		return true;
	for (int32_t i = 0; i < nkeys; i++)
		if (slice_eq(kr_string(&keys).s, slice_cstr(key)))
			return true;
	return false;
}

void kapi_describe_configs(kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	int32_t n = kr_array(r);
	reader_t probe = *r;
	for (int32_t i = 0; i < n && probe.err == OK; i++) {
		reader_u8(&probe);
		kr_string(&probe);
		int32_t nk = kr_array(&probe);
		for (int32_t k = 0; k < nk; k++)
			kr_string(&probe);
	}
	if (r->err != OK || probe.err != OK || n < 0) {
		kreq_malformed(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	kw_i32(b, 0);
	kw_i32(b, n);
	for (int32_t i = 0; i < n; i++) {
		int8_t type = (int8_t)reader_u8(r);
		slice_t name = kr_string(r).s;
		int32_t nk = kr_array(r);
		reader_t keys = *r;
		for (int32_t k = 0; k < nk; k++)
			kr_string(r);
		char tname[TOPIC_NAME_MAX + 1];
		topic_t *t = NULL;
		int16_t err = KERR_NONE;
		if (type == RESOURCE_TOPIC) {
			t = cstr(name, tname, sizeof tname) ? storage_topic_get(kreq_storage(req), tname) : NULL;
			if (t == NULL)
				err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
		} else if (type != RESOURCE_BROKER) {
			err = KERR_INVALID_REQUEST;
		}
		kw_i16(b, err);
		kw_nstring(b, err == KERR_UNKNOWN_TOPIC_OR_PARTITION ? "no such topic"
			      : err                                 ? "only TOPIC and BROKER resources are supported"
								    : NULL);
		kw_i8(b, type);
		kw_string(b, name);
		if (t == NULL) {
			kw_i32(b, 0);
			continue;
		}
		partition_config_t cfg;
		topic_config(t, &cfg);
		size_t count_at = b->len;
		int32_t count = 0;
		kw_i32(b, 0);
		for (int k = 0; k < NKEYS; k++) {
			if (!wanted(keys, nk, topic_keys[k]))
				continue;
			char val[64];
			config_value(&cfg, topic_keys[k], val, sizeof val);
			explicit_ctx_t ec = { topic_keys[k], false };
			topic_config_list(t, find_explicit, &ec);
			kw_cstring(b, topic_keys[k]);
			kw_cstring(b, val);
			kw_bool(b, false); /* read_only */
			if (v == 0)
				kw_bool(b, !ec.found); /* is_default */
			else
				kw_i8(b, ec.found ? SOURCE_DYNAMIC_TOPIC : SOURCE_DEFAULT);
			kw_bool(b, false); /* is_sensitive */
			if (v >= 1)
				kw_i32(b, 0); /* synonyms */
			count++;
		}
		be32_store(b->data + count_at, (uint32_t)count);
		topic_put(t);
	}
	kreq_finish(req);
}

/* ---------------------------------------------------------------- AlterConfigs */

typedef struct {
	char keys[CONFIGS_MAX][64];
	int n;
} key_list_t;

static void collect_key(void *arg, const char *key, const char *value)
{
	(void)value;
	key_list_t *l = arg;
	if (l->n < CONFIGS_MAX)
		snprintf(l->keys[l->n++], sizeof l->keys[0], "%s", key);
}

void kapi_alter_configs(kreq_t *req)
{
	reader_t *r = &req->r;
	int32_t n = kr_array(r);
	reader_t probe = *r;
	for (int32_t i = 0; i < n && probe.err == OK; i++) {
		reader_u8(&probe);
		kr_string(&probe);
		int32_t nc = kr_array(&probe);
		for (int32_t k = 0; k < nc && probe.err == OK; k++) {
			kr_string(&probe);
			kr_string(&probe);
		}
	}
	bool validate_only = reader_u8(&probe) != 0;
	if (r->err != OK || probe.err != OK || n < 0) {
		kreq_malformed(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	kw_i32(b, 0);
	kw_i32(b, n);
	storage_t *st = kreq_storage(req);
	for (int32_t i = 0; i < n; i++) {
		int8_t type = (int8_t)reader_u8(r);
		slice_t name = kr_string(r).s;
		int32_t nc = kr_array(r);
		reader_t cfgs = *r;
		for (int32_t k = 0; k < nc; k++) {
			kr_string(r);
			kr_string(r);
		}
		char tname[TOPIC_NAME_MAX + 1];
		int16_t err = KERR_NONE;
		const char *msg = NULL;
		topic_t *t = NULL;
		if (type != RESOURCE_TOPIC) {
			err = KERR_INVALID_REQUEST;
			msg = "only TOPIC resources can be altered";
		} else if (!cstr(name, tname, sizeof tname) || (t = storage_topic_get(st, tname)) == NULL) {
			err = KERR_UNKNOWN_TOPIC_OR_PARTITION;
			msg = "no such topic";
		}
		/* Validate every entry before changing anything. */
		char keys[CONFIGS_MAX][64], vals[CONFIGS_MAX][256];
		int nkv = 0;
		partition_config_t probe_cfg;
		partition_config_default(&probe_cfg);
		for (int32_t k = 0; k < nc && err == KERR_NONE; k++) {
			kstr_t key = kr_string(&cfgs), val = kr_string(&cfgs);
			if (nkv >= CONFIGS_MAX || val.null || !cstr(key.s, keys[nkv], sizeof keys[0]) ||
			    !cstr(val.s, vals[nkv], sizeof vals[0])) {
				err = KERR_INVALID_CONFIG;
				msg = "bad config entry";
			} else if (topic_config_apply(&probe_cfg, keys[nkv], vals[nkv], &msg) != OK) {
				err = KERR_INVALID_CONFIG;
			}
			nkv++;
		}
		if (err == KERR_NONE && !validate_only) {
			/* AlterConfigs replaces the whole set: what the request does not name goes back to default. */
			key_list_t old = { .n = 0 };
			topic_config_list(t, collect_key, &old);
			for (int k = 0; k < old.n; k++) {
				bool kept = false;
				for (int j = 0; j < nkv; j++)
					kept |= strcmp(keys[j], old.keys[k]) == 0;
				if (!kept)
					storage_topic_config_set(st, tname, old.keys[k], NULL);
			}
			for (int j = 0; j < nkv && err == KERR_NONE; j++)
				if (storage_topic_config_set(st, tname, keys[j], vals[j]) != OK) {
					err = KERR_INVALID_CONFIG;
					msg = "cannot store the config";
				}
		}
		topic_put(t);
		kw_i16(b, err);
		kw_nstring(b, err ? msg : NULL);
		kw_i8(b, type);
		kw_string(b, name);
	}
	kreq_finish(req);
}
