/* cloudevents.c -- CloudEvents <-> Kafka records. See cloudevents.h. */
#include "event/cloudevents.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/compat.h"
#include "core/fl_assert.h"

const char *ce_get(const ce_event_t *ev, const char *name)
{
	for (int i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, name) == 0)
			return ev->attrs[i].value;
	return NULL;
}

bool ce_set(ce_event_t *ev, const char *name, const char *value)
{
	for (int i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, name) == 0) {
			free(ev->attrs[i].value);
			ev->attrs[i].value = strdup(value);
			return true;
		}
	if (ev->nattrs == CE_ATTRS_MAX)
		return false;
	ev->attrs[ev->nattrs].name = strdup(name);
	ev->attrs[ev->nattrs].value = strdup(value);
	ev->nattrs++;
	return true;
}

void ce_event_free(ce_event_t *ev)
{
	for (int i = 0; i < ev->nattrs; i++) {
		free(ev->attrs[i].name);
		free(ev->attrs[i].value);
	}
	ev->nattrs = 0;
	buf_free(&ev->data);
	ev->has_data = false;
}

static bool valid_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9')))
			return false;
	return true;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

static bool b64_decode(const char *s, buf_t *out)
{
	uint32_t acc = 0;
	int bits = 0;
	for (; *s; s++) {
		if (*s == '=' || *s == '\n' || *s == '\r')
			continue;
		int v = b64_val(*s);
		if (v < 0)
			return false;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_put_u8(out, (uint8_t)(acc >> bits));
		}
	}
	return true;
}

static void b64_encode(const uint8_t *p, size_t n, buf_t *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		char q[4] = { tbl[v >> 18 & 63], tbl[v >> 12 & 63], i + 1 < n ? tbl[v >> 6 & 63] : '=',
			      i + 2 < n ? tbl[v & 63] : '=' };
		buf_append(out, q, 4);
	}
}

const char *ce_from_json(json_t *obj, ce_event_t *ev)
{
	if (!json_is_object(obj))
		return "an event must be a JSON object";
	const char *key;
	json_t *val;
	json_object_foreach(obj, key, val) {
		if (strcmp(key, "data") == 0) {
			ev->has_data = true;
			if (json_is_string(val)) {
				buf_append(&ev->data, json_string_value(val), json_string_length(val));
			} else {
				char *s = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
				if (s == NULL)
					return "data cannot be encoded";
				buf_append(&ev->data, s, strlen(s));
				free(s);
				/* JSON data in the JSON format is JSON unless the event says otherwise. */
				if (json_object_get(obj, "datacontenttype") == NULL)
					ce_set(ev, "datacontenttype", "application/json");
			}
			continue;
		}
		if (strcmp(key, "data_base64") == 0) {
			if (!json_is_string(val) || !b64_decode(json_string_value(val), &ev->data))
				return "data_base64 must be a base64 string";
			ev->has_data = true;
			continue;
		}
		if (!valid_name(key))
			return "attribute names are 1-20 characters of [a-z0-9]";
		char num[32];
		const char *s = NULL;
		if (json_is_string(val))
			s = json_string_value(val);
		else if (json_is_integer(val))
			snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(val)), s = num;
		else if (json_is_boolean(val))
			s = json_is_true(val) ? "true" : "false";
		else if (json_is_null(val))
			continue;
		else
			return "attribute values must be strings, integers or booleans";
		if (!ce_set(ev, key, s))
			return "too many attributes";
	}
	return NULL;
}

const char *ce_validate(const ce_event_t *ev)
{
	static const char *const required[] = { "id", "source", "type", "specversion" };
	static const char *const missing[] = { "missing required attribute 'id'",
					       "missing required attribute 'source'",
					       "missing required attribute 'type'",
					       "missing required attribute 'specversion'" };
	for (int i = 0; i < 4; i++) {
		const char *v = ce_get(ev, required[i]);
		if (v == NULL || v[0] == 0)
			return missing[i];
	}
	if (strcmp(ce_get(ev, "specversion"), "1.0") != 0)
		return "specversion must be \"1.0\"";
	for (int i = 0; i < ev->nattrs; i++)
		if (!valid_name(ev->attrs[i].name))
			return "attribute names are 1-20 characters of [a-z0-9]";
	return NULL;
}

int ce_to_record(const ce_event_t *ev, slice_t *key, slice_t *value, ce_kv_t *headers, char (*names)[32],
		 int cap)
{
	const char *pk = ce_get(ev, "partitionkey");
	*key = pk ? slice_cstr(pk) : slice_make(NULL, 0);
	*value = ev->has_data ? slice_make(ev->data.data ? ev->data.data : (const uint8_t *)"", ev->data.len)
			      : slice_make(NULL, 0);
	int n = 0;
	for (int i = 0; i < ev->nattrs && n < cap; i++) {
		const ce_attr_t *a = &ev->attrs[i];
		if (strcmp(a->name, "partitionkey") == 0)
			continue;
		if (strcmp(a->name, "datacontenttype") == 0)
			snprintf(names[n], sizeof names[n], "content-type");
		else
			snprintf(names[n], sizeof names[n], "ce_%s", a->name);
		headers[n].key = slice_cstr(names[n]);
		headers[n].value = slice_cstr(a->value);
		headers[n].value_null = false;
		n++;
	}
	return n;
}

static bool is_utf8_json_text(slice_t v)
{
	for (size_t i = 0; i < v.len; i++)
		if (v.ptr[i] == 0)
			return false;
	json_t *s = json_stringn((const char *)v.ptr, v.len); /* NULL unless valid UTF-8 */
	if (s == NULL)
		return false;
	json_decref(s);
	return true;
}

json_t *ce_record_to_json(const ce_kafka_record_t *rec)
{
	json_t *o = json_object();
	bool is_ce = false, json_data = false;
	const char *topic = rec->topic;
	int32_t partition = rec->partition;
	int64_t offset = rec->offset, timestamp = rec->timestamp;
	for (int i = 0; i < rec->nheaders; i++) {
		slice_t k = rec->headers[i].key, v = rec->headers[i].value;
		if (rec->headers[i].value_null)
			continue;
		char name[64];
		if (k.len > 3 && k.len < 40 && memcmp(k.ptr, "ce_", 3) == 0) {
			snprintf(name, sizeof name, "%.*s", (int)(k.len - 3), (const char *)k.ptr + 3);
			is_ce = true;
		} else if (slice_eq(k, slice_cstr("content-type"))) {
			snprintf(name, sizeof name, "datacontenttype");
			json_data = v.len >= 16 && memcmp(v.ptr, "application/json", 16) == 0;
		} else {
			continue;
		}
		json_object_set_new(o, name, json_stringn_nocheck((const char *)v.ptr, v.len));
	}
	if (!is_ce) { /* a plain Kafka record: attributes from where it lives */
		char buf[300];
		snprintf(buf, sizeof buf, "%s-%" PRId32 "-%" PRId64, topic, partition, offset);
		json_object_set_new(o, "id", json_string(buf));
		snprintf(buf, sizeof buf, "/factlog/topics/%s", topic);
		json_object_set_new(o, "source", json_string(buf));
		json_object_set_new(o, "type", json_string("factlog.record"));
		json_object_set_new(o, "specversion", json_string("1.0"));
		time_t secs = (time_t)(timestamp / 1000);
		struct tm tm;
		gmtime_r(&secs, &tm);
		snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(timestamp % 1000));
		json_object_set_new(o, "time", json_string(buf));
	}
	if (!rec->key_null)
	{
		json_t *k = rec->key.len ? json_stringn((const char *)rec->key.ptr, rec->key.len) : json_string("");
		json_object_set_new(o, "partitionkey", k ? k : json_string("(binary key)"));
	}
	if (!rec->value_null) {
		json_t *d = NULL;
		if (json_data)
			d = json_loadb((const char *)rec->value.ptr, rec->value.len, JSON_DECODE_ANY, NULL);
		if (d != NULL) {
			json_object_set_new(o, "data", d);
		} else if (is_utf8_json_text(rec->value)) {
			json_object_set_new(o, "data", json_stringn((const char *)rec->value.ptr, rec->value.len));
		} else {
			buf_t b = { 0 };
			b64_encode(rec->value.ptr, rec->value.len, &b);
			json_object_set_new(o, "data_base64", json_stringn((const char *)b.data, b.len));
			buf_free(&b);
		}
	}
	json_object_set_new(o, "partition", json_integer(partition));
	json_object_set_new(o, "offset", json_integer(offset));
	return o;
}

int32_t ce_partition_for_key(slice_t key, int32_t partitions)
{
	/* murmur2, seed 0x9747b28c, as org.apache.kafka.common.utils.Utils.murmur2 */
	const uint32_t m = 0x5bd1e995;
	const int r = 24;
	uint32_t h = 0x9747b28cu ^ (uint32_t)key.len;
	size_t n4 = key.len / 4;
	for (size_t i = 0; i < n4; i++) {
		const uint8_t *p = key.ptr + 4 * i;
		uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
		k *= m;
		k ^= k >> r;
		k *= m;
		h *= m;
		h ^= k;
	}
	const uint8_t *t = key.ptr + 4 * n4;
	switch (key.len % 4) {
	case 3: h ^= (uint32_t)t[2] << 16; /* fall through */
	case 2: h ^= (uint32_t)t[1] << 8;  /* fall through */
	case 1: h ^= t[0]; h *= m;
	}
	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return (int32_t)((h & 0x7fffffff) % (uint32_t)partitions);
}
