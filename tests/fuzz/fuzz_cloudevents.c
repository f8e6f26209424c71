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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	raw_record(data, size);
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
