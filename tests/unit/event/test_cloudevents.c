/*
 * test_cloudevents.c -- ce_record_to_text: the CloudEvent text of a Kafka record, exactly, for the runtime's
 * fast path (topic names of Kafka's legal characters are copied as they are) and for names that need JSON
 * escaping, with and without CloudEvents headers, keys and the topic member. Each text must also parse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "event/cloudevents.h"

static void check(const ce_kafka_record_t *r, bool with_topic, const char *want)
{
	buf_t b = { 0 };
	ce_record_to_text(r, with_topic, &b);
	if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0)
		fail_msg("got  %.*s\nwant %s", (int)b.len, (const char *)b.data, want);
	json_t *o = ce_text_parse((const char *)b.data, b.len);
	assert_non_null(o);
	json_decref(o);
	buf_free(&b);
}

static void test_plain_record(void **state)
{
	(void)state;
	ce_kafka_record_t r = { .topic = "orders.v1-x_Y9", .partition = 3, .offset = 123456789012LL,
				.timestamp = 1700000000123LL, .key = slice_cstr("k1"), .value = slice_cstr("plain") };
	check(&r, false, "{\"id\":\"orders.v1-x_Y9-3-123456789012\",\"source\":\"/factlog/topics/orders.v1-x_Y9\","
			 "\"type\":\"factlog.record\",\"specversion\":\"1.0\",\"time\":\"2023-11-14T22:13:20.123Z\","
			 "\"partitionkey\":\"k1\",\"data\":\"plain\",\"partition\":3,\"offset\":123456789012}");
	check(&r, true, "{\"id\":\"orders.v1-x_Y9-3-123456789012\",\"source\":\"/factlog/topics/orders.v1-x_Y9\","
			"\"type\":\"factlog.record\",\"specversion\":\"1.0\",\"time\":\"2023-11-14T22:13:20.123Z\","
			"\"partitionkey\":\"k1\",\"data\":\"plain\",\"topic\":\"orders.v1-x_Y9\",\"partition\":3,"
			"\"offset\":123456789012}");
}

static void test_name_that_needs_escaping(void **state)
{
	(void)state;
	ce_kafka_record_t r = { .topic = "a\"b\\c", .partition = 0, .offset = 7, .timestamp = 0, .key_null = true,
				.value_null = true };
	check(&r, true, "{\"id\":\"a\\\"b\\\\c-0-7\",\"source\":\"/factlog/topics/a\\\"b\\\\c\","
			"\"type\":\"factlog.record\",\"specversion\":\"1.0\",\"time\":\"1970-01-01T00:00:00.000Z\","
			"\"topic\":\"a\\\"b\\\\c\",\"partition\":0,\"offset\":7}");
}

/* Kafka allows 249 characters; a longer name (not one factlog creates) keeps its whole topic member, and
 * the id and source take its first 249. */
static void test_name_longer_than_kafka_allows(void **state)
{
	(void)state;
	char topic[301], want[1200];
	memset(topic, 'a', 300);
	topic[300] = 0;
	ce_kafka_record_t r = { .topic = topic, .partition = 0, .offset = 1, .timestamp = 0, .key_null = true,
				.value_null = true };
	snprintf(want, sizeof want,
		 "{\"id\":\"%.249s-0-1\",\"source\":\"/factlog/topics/%.249s\",\"type\":\"factlog.record\","
		 "\"specversion\":\"1.0\",\"time\":\"1970-01-01T00:00:00.000Z\",\"topic\":\"%s\",\"partition\":0,"
		 "\"offset\":1}",
		 topic, topic, topic);
	check(&r, true, want);
}

static void test_cloudevent_headers_and_json_data(void **state)
{
	(void)state;
	ce_kv_t h[2] = { { slice_cstr("content-type"), slice_cstr("application/json"), false },
			 { slice_cstr("ce_type"), slice_cstr("x.y"), false } };
	ce_kafka_record_t r = { .topic = "t", .partition = 1, .offset = 2, .timestamp = 5, .key_null = true,
				.value = slice_cstr("{\"a\":1}"), .headers = h, .nheaders = 2 };
	/* a CloudEvent in binary mode: its own attributes, no made-up id or source; JSON data embedded */
	check(&r, false, "{\"datacontenttype\":\"application/json\",\"type\":\"x.y\",\"data\":{\"a\":1},"
			 "\"partition\":1,\"offset\":2}");
	check(&r, true, "{\"datacontenttype\":\"application/json\",\"type\":\"x.y\",\"data\":{\"a\":1},"
			"\"topic\":\"t\",\"partition\":1,\"offset\":2}");
	r.nheaders = 1; /* JSON content type, not a CloudEvent: made-up attributes after the header's */
	check(&r, false, "{\"datacontenttype\":\"application/json\",\"id\":\"t-1-2\",\"source\":\"/factlog/topics/t\","
			 "\"type\":\"factlog.record\",\"specversion\":\"1.0\",\"time\":\"1970-01-01T00:00:00.005Z\","
			 "\"data\":{\"a\":1},\"partition\":1,\"offset\":2}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_record),
		cmocka_unit_test(test_name_that_needs_escaping),
		cmocka_unit_test(test_name_longer_than_kafka_allows),
		cmocka_unit_test(test_cloudevent_headers_and_json_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
