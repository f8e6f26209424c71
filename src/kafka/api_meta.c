/* api_meta.c -- ApiVersions, Metadata, FindCoordinator, InitProducerId, and the API table. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/compat.h"
#include "core/fl_assert.h"
#include "kafka/kafka_int.h"

/* The versions each client needs (docs/protocol.md); none flexible except ApiVersions v3. */
const kapi_t kapi_table[] = {
	{ 0, 3, 7, "Produce", kapi_produce },
	{ 1, 4, 11, "Fetch", kapi_fetch },
	{ 2, 1, 3, "ListOffsets", kapi_list_offsets },
	{ 3, 0, 4, "Metadata", kapi_metadata },
	{ 8, 2, 5, "OffsetCommit", kapi_group },
	{ 9, 1, 4, "OffsetFetch", kapi_group },
	{ 10, 0, 2, "FindCoordinator", kapi_find_coordinator },
	{ 11, 0, 5, "JoinGroup", kapi_group },
	{ 12, 0, 3, "Heartbeat", kapi_group },
	{ 13, 0, 1, "LeaveGroup", kapi_group },
	{ 14, 0, 3, "SyncGroup", kapi_group },
	{ 15, 0, 2, "DescribeGroups", kapi_group },
	{ 16, 0, 2, "ListGroups", kapi_group },
	{ 18, 0, 3, "ApiVersions", kapi_api_versions },
	{ 19, 0, 4, "CreateTopics", kapi_create_topics },
	{ 20, 0, 1, "DeleteTopics", kapi_delete_topics },
	{ 22, 0, 1, "InitProducerId", kapi_init_producer_id },
	{ 32, 0, 2, "DescribeConfigs", kapi_describe_configs },
	{ 33, 0, 1, "AlterConfigs", kapi_alter_configs },
	{ 37, 0, 1, "CreatePartitions", kapi_create_partitions },
	{ 42, 0, 1, "DeleteGroups", kapi_group },
};
const int kapi_count = (int)(sizeof kapi_table / sizeof kapi_table[0]);

void kapi_api_versions(kreq_t *req)
{
	int v = req->api_version;
	bool supported = v >= 0 && v <= 3;
	buf_t *b = &req->resp.mem;
	kresp_begin(req); /* the ApiVersions response header never has tagged fields */
	if (!supported || v < 3) {
		/* v0-2 layout; also the answer to a version we do not know, so the client can step down. */
		kw_i16(b, supported ? KERR_NONE : KERR_UNSUPPORTED_VERSION);
		kw_i32(b, kapi_count);
		for (int i = 0; i < kapi_count; i++) {
			kw_i16(b, kapi_table[i].key);
			kw_i16(b, kapi_table[i].min);
			kw_i16(b, kapi_table[i].max);
		}
		if (supported && v >= 1)
			kw_i32(b, 0); /* throttle_time_ms */
	} else {
		kw_i16(b, KERR_NONE);
		kw_compact_array(b, kapi_count);
		for (int i = 0; i < kapi_count; i++) {
			kw_i16(b, kapi_table[i].key);
			kw_i16(b, kapi_table[i].min);
			kw_i16(b, kapi_table[i].max);
			kw_tags(b);
		}
		kw_i32(b, 0);
		kw_tags(b);
	}
	kreq_finish(req);
}

static void write_broker(kreq_t *req, bool rack)
{
	kafka_server_t *s = kreq_server(req);
	buf_t *b = &req->resp.mem;
	kw_i32(b, s->opts.node_id);
	kw_cstring(b, s->advertised_host);
	kw_i32(b, s->opts.advertised_port);
	if (rack)
		kw_null_string(b);
}

static void write_topic(kreq_t *req, topic_t *t, slice_t name, int16_t err)
{
	buf_t *b = &req->resp.mem;
	int v = req->api_version;
	kw_i16(b, err);
	kw_string(b, name);
	if (v >= 1)
		kw_bool(b, false); /* is_internal */
	int32_t n = t ? topic_partition_count(t) : 0;
	kw_i32(b, n);
	for (int32_t i = 0; i < n; i++) {
		err_t oe;
		partition_t *p = topic_partition(t, i, &oe);
		kw_i16(b, p ? KERR_NONE : KERR_KAFKA_STORAGE_ERROR);
		kw_i32(b, i);
		kw_i32(b, kreq_server(req)->opts.node_id); /* leader */
		kw_i32(b, 1);
		kw_i32(b, kreq_server(req)->opts.node_id); /* replicas */
		kw_i32(b, 1);
		kw_i32(b, kreq_server(req)->opts.node_id); /* isr */
	}
}

typedef struct {
	kreq_t *req;
	int32_t count;
} all_ctx_t;

static void count_topic(void *arg, const char *name)
{
	(void)name;
	((all_ctx_t *)arg)->count++;
}

static void write_named(void *arg, const char *name)
{
	all_ctx_t *c = arg;
	topic_t *t = storage_topic_get(kreq_storage(c->req), name);
	write_topic(c->req, t, slice_cstr(name), KERR_NONE);
	topic_put(t);
	c->count--;
}

void kapi_metadata(kreq_t *req)
{
	reader_t *r = &req->r;
	int v = req->api_version;
	int32_t n = kr_array(r);
	size_t names_at = (size_t)(r->pos - req->frame);
	for (int32_t i = 0; i < n && r->err == OK; i++)
		kr_string(r);
	bool allow_create = true;
	if (v >= 4)
		allow_create = reader_u8(r) != 0;
	if (r->err != OK) {
		kreq_malformed(req);
		return;
	}
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (v >= 3)
		kw_i32(b, 0);
	kw_i32(b, 1);
	write_broker(req, v >= 1);
	if (v >= 2)
		kw_cstring(b, "factlog");
	if (v >= 1)
		kw_i32(b, kreq_server(req)->opts.node_id); /* controller */
	bool all = (v == 0 && n == 0) || n < 0;
	if (all) {
		all_ctx_t c = { req, 0 };
		storage_topic_names(kreq_storage(req), count_topic, &c);
		/* Topics may come or go between the count and the listing: write what the count promised. */
		size_t at = b->len;
		kw_i32(b, c.count);
		int32_t promised = c.count;
		storage_topic_names(kreq_storage(req), write_named, &c);
		be32_store(b->data + at, (uint32_t)(promised - c.count));
	} else {
		kw_i32(b, n);
		reader_t names = reader_make(req->frame + names_at, req->frame_len - names_at);
		for (int32_t i = 0; i < n; i++) {
			kstr_t name = kr_string(&names);
			int16_t kerr;
			topic_t *t = kafka_topic(req, name.s, allow_create, &kerr);
			write_topic(req, t, name.s, kerr);
			topic_put(t);
		}
	}
	kreq_finish(req);
}

void kapi_find_coordinator(kreq_t *req)
{
	reader_t *r = &req->r;
	kr_string(r); /* key */
	if (req->api_version >= 1)
		reader_u8(r); /* key_type */
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	if (req->api_version >= 1)
		kw_i32(b, 0);
	kw_i16(b, KERR_NONE);
	if (req->api_version >= 1)
		kw_null_string(b);
	write_broker(req, false);
	kreq_finish(req);
}

void kapi_init_producer_id(kreq_t *req)
{
	reader_t *r = &req->r;
	kstr_t txn = kr_string(r);
	reader_i32(r); /* transaction_timeout_ms */
	buf_t *b = &req->resp.mem;
	kresp_begin(req);
	kw_i32(b, 0);
	if (!txn.null) {
		kw_i16(b, KERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED); /* transactions are not supported yet */
		kw_i64(b, -1);
		kw_i16(b, -1);
	} else {
		int64_t id;
		err_t rc = storage_next_producer_id(kreq_storage(req), &id);
		kw_i16(b, rc == OK ? KERR_NONE : KERR_UNKNOWN_SERVER_ERROR);
		kw_i64(b, rc == OK ? id : -1);
		kw_i16(b, rc == OK ? 0 : -1);
	}
	kreq_finish(req);
}
