/*
 * fuzz_cloudevents.c -- libFuzzer target: the HTTP gateway's CloudEvents path without the socket:
 * JSON -> events (structured or batch) -> validation -> Kafka records -> a RecordBatch that must validate
 * -> each record back to JSON. Nothing may crash, leak or produce an invalid batch.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fl_assert.h"
#include "event/cloudevents.h"
#include "storage/recordbatch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(json_t *obj)
{
	ce_event_t ev;
	memset(&ev, 0, sizeof ev);
	if (ce_from_json(obj, &ev) == NULL && ce_validate(&ev) == NULL) {
		slice_t key, value;
		ce_kv_t ceh[CE_ATTRS_MAX];
		rb_kv_t hdrs[CE_ATTRS_MAX];
		char names[CE_ATTRS_MAX][32];
		int nh = ce_to_record(&ev, &key, &value, ceh, names, CE_ATTRS_MAX);
		for (int i = 0; i < nh; i++)
			hdrs[i] = (rb_kv_t){ .key = ceh[i].key, .value = ceh[i].value, .value_null = false };
		rb_builder_t b;
		rb_builder_init(&b, -1, -1, -1);
		rb_builder_add(&b, 1700000000000, key, value, hdrs, nh);
		slice_t batch = rb_builder_finish(&b);
		rb_header_t h;
		ASSERT(rb_validate(batch.ptr, batch.len, &h) == OK);
		reader_t r = reader_make(batch.ptr + RB_HEADER_LEN, batch.len - RB_HEADER_LEN);
		rb_record_t rec;
		rb_record_next(&r, &rec);
		ASSERT(r.err == OK);
		ce_kv_t back_h[CE_ATTRS_MAX];
		int nb = 0;
		reader_t hr = reader_make(rec.headers.ptr, rec.headers.len);
		for (int32_t i = 0; i < rec.headers_count && nb < CE_ATTRS_MAX; i++, nb++) {
			rb_record_header_next(&hr, &back_h[nb].key, &back_h[nb].value, &back_h[nb].value_null);
			ASSERT(hr.err == OK);
		}
		ce_kafka_record_t kr = { .topic = "t", .timestamp = 1700000000000, .key = rec.key,
					 .value = rec.value, .key_null = rec.key_null, .value_null = rec.value_null,
					 .headers = back_h, .nheaders = nb };
		json_t *back = ce_record_to_json(&kr);
		ASSERT(back != NULL);
		ASSERT(json_object_get(back, "offset") != NULL);
		if (ce_get(&ev, "id") != NULL && json_object_get(back, "id") != NULL)
			ASSERT(strcmp(json_string_value(json_object_get(back, "id")), ce_get(&ev, "id")) == 0);
		json_decref(back);
		if (key.len > 0)
			(void)ce_partition_for_key(key, 7);
		rb_builder_free(&b);
	}
	ce_event_free(&ev);
}

/* Arbitrary bytes as a record (key, value, a ce_ header, content-type JSON or not): the text form must
 * always be valid JSON, whatever the bytes. */
static void raw_record(const uint8_t *data, size_t size)
{
	size_t a = size / 3, b = 2 * size / 3;
	ce_kv_t h[2] = { { slice_cstr("ce_type"), slice_make(data, a), false },
			 { slice_cstr("content-type"),
			   slice_cstr(size % 2 ? "application/json" : "text/plain"), false } };
	ce_kafka_record_t r = { .topic = "t", .partition = 1, .offset = 2, .timestamp = 1700000000000,
				.key = slice_make(data + a, b - a), .value = slice_make(data + b, size - b),
				.headers = h, .nheaders = 2 };
	buf_t t = { 0 };
	ce_record_to_text(&r, size % 3 == 0, &t);
	json_error_t je;
	json_t *o = ce_text_parse((const char *)t.data, t.len);
	if (o == NULL)
		json_decref(json_loadb((const char *)t.data, t.len, JSON_ALLOW_NUL, &je));
	if (o == NULL)
		fprintf(stderr, "invalid JSON (%s at %d): %.*s\n", je.text, je.position, (int)t.len, (const char *)t.data);
	ASSERT(o != NULL);
	ASSERT(json_number_value(json_object_get(o, "offset")) == 2);
	json_decref(o);
	buf_free(&t);
}

/* ---- the gateway's text parser against the document parser it replaced ---- */

#define FZ_MAX 64
typedef struct {
	ce_event_t v[FZ_MAX];
	int n;
} fz_events_t;

static ce_event_t *fz_new(void *arg)
{
	fz_events_t *e = arg;
	ASSERT(e->n < FZ_MAX);
	ce_event_t *ev = &e->v[e->n++];
	memset(ev, 0, sizeof *ev);
	return ev;
}

static void fz_free(fz_events_t *e)
{
	for (int i = 0; i < e->n; i++)
		ce_event_free(&e->v[i]);
	e->n = 0;
}

static int max_depth(const uint8_t *d, size_t n)
{
	int depth = 0, m = 0;
	bool str = false;
	for (size_t i = 0; i < n; i++) {
		if (str) {
			if (d[i] == '\\')
				i++;
			else if (d[i] == '"')
				str = false;
		} else if (d[i] == '"') {
			str = true;
		} else if (d[i] == '{' || d[i] == '[') {
			if (++depth > m)
				m = depth;
		} else if (d[i] == '}' || d[i] == ']') {
			depth--;
		}
	}
	return m;
}

/* The same events: attributes equal; data bytes equal, or, for JSON data, the same JSON value. */
static void same_event(const ce_event_t *a, const ce_event_t *b)
{
	ASSERT(a->nattrs == b->nattrs);
	for (int i = 0; i < a->nattrs; i++) {
		const char *v = ce_get(b, a->attrs[i].name);
		ASSERT(v != NULL && strcmp(v, a->attrs[i].value) == 0);
	}
	ASSERT(a->has_data == b->has_data);
	if (a->data.len == b->data.len && (a->data.len == 0 || memcmp(a->data.data, b->data.data, a->data.len) == 0))
		return;
	json_t *x = json_loadb((const char *)a->data.data, a->data.len, JSON_DECODE_ANY, NULL);
	json_t *y = json_loadb((const char *)b->data.data, b->data.len, JSON_DECODE_ANY, NULL);
	ASSERT(x != NULL && y != NULL && json_equal(x, y));
	json_decref(x);
	json_decref(y);
}

static void text_vs_document(const uint8_t *data, size_t size)
{
	static fz_events_t t, d;
	for (int batch = 0; batch <= 1; batch++) {
		const char *wt = ce_parse_text(data, size, batch, FZ_MAX, fz_new, &t);
		const char *wd = NULL;
		/* Repeated keys: the last one wins in jansson, the first bad one stops the text parser; compare
		 * only documents without them. */
		json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
		if (doc == NULL)
			wd = "malformed JSON or repeated keys";
		else if (!batch)
			wd = ce_from_json(doc, fz_new(&d));
		else if (!json_is_array(doc) || json_array_size(doc) == 0 || json_array_size(doc) > FZ_MAX)
			wd = "not a batch";
		else
			for (size_t i = 0; i < json_array_size(doc) && wd == NULL; i++)
				wd = ce_from_json(json_array_get(doc, i), fz_new(&d));
		json_decref(doc);
		/* What the document parser accepts, the text parser accepts the same way (it also accepts a little
		 * more: integers beyond 64 bits and \u0000 inside data; it refuses nesting beyond 128). */
		/* (jansson also takes a raw NUL byte between tokens; the text parser does not.) */
		if (wd == NULL && memchr(data, 0, size) == NULL) {
			ASSERT(wt == NULL || max_depth(data, size) > 128);
			if (wt == NULL) {
				ASSERT(t.n == d.n);
				for (int i = 0; i < t.n; i++)
					same_event(&d.v[i], &t.v[i]);
			}
		}
		fz_free(&t);
		fz_free(&d);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	raw_record(data, size);
	text_vs_document(data, size);
	json_error_t je;
	json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
	if (doc == NULL)
		return 0;
	if (json_is_array(doc)) {
		size_t i;
		json_t *el;
		json_array_foreach(doc, i, el) {
			if (i >= 64)
				break;
			one(el);
		}
	} else {
		one(doc);
	}
	json_decref(doc);
	return 0;
}
