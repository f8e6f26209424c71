/*
 * cloudevents.h -- CloudEvents 1.0 in, Kafka records out, and back (the CloudEvents Kafka protocol binding,
 * binary content mode).
 *
 * Purpose: pure functions (no I/O): parse a structured event (application/cloudevents+json), a batch
 * (application/cloudevents-batch+json) or a binary-mode event (ce-* HTTP headers + body); validate the
 * required attributes; encode an event as a Kafka record (key = partitionkey, value = data, headers ce_<attr>
 * and content-type); decode a Kafka record back into a JSON event (records that were not CloudEvents get
 * attributes synthesized from their topic, partition and offset).
 * Shared by the HTTP gateway (src/http) and the functions runtime (src/runtime); depends only on core, so
 * the runtime, a Kafka client, never reaches into storage.
 * Ownership: ce_event_t owns its strings and data; ce_event_free releases them. Errors come back as a
 * static message for the HTTP 400 body.
 */
#ifndef FL_EVENT_CLOUDEVENTS_H
#define FL_EVENT_CLOUDEVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"

#define CE_ATTRS_MAX 32

typedef struct {
	char *name, *value;
} ce_attr_t;

/* A Kafka record header: the same shape as storage's rb_kv_t, kept here so this module needs no storage. */
typedef struct {
	slice_t key, value;
	bool value_null;
} ce_kv_t;

/* A Kafka record as read back, wherever it came from (a segment or librdkafka). */
typedef struct {
	const char *topic;
	int32_t partition;
	int64_t offset;
	int64_t timestamp; /* milliseconds */
	slice_t key, value;
	bool key_null, value_null;
	const ce_kv_t *headers;
	int nheaders;
} ce_kafka_record_t;

typedef struct {
	ce_attr_t attrs[CE_ATTRS_MAX]; /* every context attribute but data, as strings (in the arena) */
	int nattrs;
	buf_t data;
	bool has_data;
	struct ce_arena *arena;        /* where the attribute strings live: blocks that never move */
} ce_event_t;

const char *ce_get(const ce_event_t *ev, const char *name);
/* Sets an attribute (name must be a valid CloudEvents attribute name); false when full. */
bool ce_set(ce_event_t *ev, const char *name, const char *value);
void ce_event_free(ce_event_t *ev);

/* Structured mode: one JSON object. Returns NULL on success or the problem. */
const char *ce_from_json(json_t *obj, ce_event_t *ev);
/* Structured (batch false: one JSON object) or batch mode (a non-empty JSON array of at most max objects)
 * straight from the request text, without building a document: the same events ce_from_json gives, except
 * that JSON data keeps its text (whitespace removed; numbers and escapes as sent). new_event(arg) hands out
 * each event to fill. Returns NULL on success or the problem ("malformed JSON", ...). */
const char *ce_parse_text(const uint8_t *text, size_t len, bool batch, size_t max,
			  ce_event_t *(*new_event)(void *arg), void *arg);
/* Checks id, source, type, specversion "1.0" and the attribute names. NULL or the problem. */
const char *ce_validate(const ce_event_t *ev);

/* The Kafka record of an event: key (partitionkey or none), value (data) and headers. The slices point
 * into ev and names (header names are written there), which must outlive them. Returns the header count. */
int ce_to_record(const ce_event_t *ev, slice_t *key, slice_t *value, ce_kv_t *headers, char (*names)[32],
		 int cap);
/* A record as a JSON CloudEvent with extensions partition and offset (and partitionkey from the key; topic
 * too when with_topic), appended to b as compact JSON text without building a document: the ce_* headers
 * become attributes, content-type becomes datacontenttype, the value becomes "data" (embedded as is when it
 * is valid JSON marked application/json, a string when it is UTF-8 text, else "data_base64"). Records that
 * were not CloudEvents get id TOPIC-PARTITION-OFFSET, source /factlog/topics/TOPIC, type factlog.record and
 * their timestamp as time. Always valid JSON (invalid UTF-8 in attributes becomes U+FFFD). */
void ce_record_to_text(const ce_kafka_record_t *rec, bool with_topic, buf_t *b);
/* Parses such text into a document (new reference; NULL only when it is not JSON). Integers beyond 64 bits
 * are valid JSON but not jansson integers: then every number of the event is read as a real. */
json_t *ce_text_parse(const char *text, size_t len);
/* The same as a JSON document (new reference). */
json_t *ce_record_to_json(const ce_kafka_record_t *rec);

/* Kafka's default partitioner (murmur2 of the key, as the Java client and kafkajs compute it). */
int32_t ce_partition_for_key(slice_t key, int32_t partitions);

#endif
