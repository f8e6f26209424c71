/*
 * rdk_member.c -- a consumer-group member written directly on librdkafka, for the group tests: the same
 * spec and event stream as klib.py's Python members (JSON spec in, JSON lines out: ready, assign,
 * revoke, rec, commit, done, error).
 * Usage: rdk_member SPEC.json
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static FILE *out;
static const char *topic;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void emit(json_t *ev)
{
	json_object_set_new(ev, "t", json_integer(wall_ms()));
	char *s = json_dumps(ev, JSON_COMPACT);
	fprintf(out, "%s\n", s);
	fflush(out);
	free(s);
	json_decref(ev);
}

static json_t *b64(const void *p, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (p == NULL)
		return json_null();
	const unsigned char *d = p;
	char *s = malloc(4 * (n / 3 + 1) + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
		s[k++] = t[v >> 18 & 63];
		s[k++] = t[v >> 12 & 63];
		s[k++] = i + 1 < n ? t[v >> 6 & 63] : '=';
		s[k++] = i + 2 < n ? t[v & 63] : '=';
	}
	s[k] = 0;
	json_t *j = json_string(s);
	free(s);
	return j;
}

static json_t *parts_of(const rd_kafka_topic_partition_list_t *l)
{
	json_t *a = json_array();
	for (int i = 0; i < l->cnt; i++)
		if (strcmp(l->elems[i].topic, topic) == 0)
			json_array_append_new(a, json_integer(l->elems[i].partition));
	return a;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *arg)
{
	(void)arg;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		emit(json_pack("{s:s,s:o}", "ev", "assign", "parts", parts_of(parts)));
		rd_kafka_assign(rk, parts);
	} else {
		emit(json_pack("{s:s,s:o}", "ev", "revoke", "parts", parts_of(parts)));
		rd_kafka_assign(rk, NULL);
	}
}

static int get_int(json_t *spec, const char *k, int dflt)
{
	json_t *v = json_object_get(spec, k);
	return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}

static double get_num(json_t *spec, const char *k, double dflt)
{
	json_t *v = json_object_get(spec, k);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

static const char *get_str(json_t *spec, const char *k)
{
	json_t *v = json_object_get(spec, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void conf(rd_kafka_conf_t *c, const char *k, const char *v)
{
	char err[256];
	if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "%s: %s\n", k, err);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: rdk_member SPEC.json\n");
		return 2;
	}
	json_error_t je;
	json_t *spec = json_load_file(argv[1], 0, &je);
	if (spec == NULL) {
		fprintf(stderr, "%s: %s\n", argv[1], je.text);
		return 2;
	}
	out = fopen(get_str(spec, "out"), "a");
	topic = get_str(spec, "topic");
	const char *commit = get_str(spec, "commit") ? get_str(spec, "commit") : "none";
	const char *stop = get_str(spec, "stop"), *ready = get_str(spec, "ready"), *go = get_str(spec, "go");
	int commit_at = get_int(spec, "commit_at", -1);
	json_t *expect_j = json_object_get(spec, "expect");
	long long expect = json_is_integer(expect_j) ? json_integer_value(expect_j) : -1;
	double idle_s = get_num(spec, "idle_s", 1.0), deadline = mono() + get_num(spec, "duration_s", 60);
	char num[32];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	conf(c, "bootstrap.servers", get_str(spec, "bootstrap"));
	conf(c, "group.id", get_str(spec, "group"));
	conf(c, "client.id", get_str(spec, "client_id") ? get_str(spec, "client_id") : "rdk-member");
	conf(c, "enable.auto.commit", "false");
	conf(c, "auto.offset.reset", "earliest");
	snprintf(num, sizeof num, "%d", get_int(spec, "session_ms", 10000));
	conf(c, "session.timeout.ms", num);
	snprintf(num, sizeof num, "%d", get_int(spec, "heartbeat_ms", 1000));
	conf(c, "heartbeat.interval.ms", num);
	conf(c, "fetch.wait.max.ms", "100");
	rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
	char err[512];
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
	if (rk == NULL) {
		emit(json_pack("{s:s,s:s}", "ev", "error", "err", err));
		return 1;
	}
	rd_kafka_poll_set_consumer(rk);
	emit(json_pack("{s:s}", "ev", "ready"));
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (f)
			fclose(f);
	}
	while (go && access(go, F_OK) != 0 && mono() < deadline)
		usleep(5000);
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_subscribe(rk, sub);
	rd_kafka_topic_partition_list_destroy(sub);
	rd_kafka_topic_partition_list_t *next = rd_kafka_topic_partition_list_new(16);
	long long count = 0;
	double last_rec = mono();
	const char *reason = "deadline";
	for (;;) {
		if (mono() > deadline)
			break;
		if (stop && access(stop, F_OK) == 0) {
			reason = "stop";
			break;
		}
		if (strcmp(commit, "at") == 0 && count >= commit_at) {
			reason = "commitAt";
			break;
		}
		if (expect >= 0 && count >= expect && mono() - last_rec >= idle_s) {
			reason = "expect";
			break;
		}
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		if (m == NULL)
			continue;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				emit(json_pack("{s:s,s:s}", "ev", "error", "err", rd_kafka_message_errstr(m)));
		} else if (!(strcmp(commit, "at") == 0 && count >= commit_at)) {
			count++;
			last_rec = mono();
			emit(json_pack("{s:s,s:i,s:I,s:o,s:o}", "ev", "rec", "p", m->partition, "o", (json_int_t)m->offset,
				       "k", b64(m->key, m->key_len), "v", b64(m->payload, m->len)));
			rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(next, topic, m->partition);
			if (tp == NULL)
				tp = rd_kafka_topic_partition_list_add(next, topic, m->partition);
			tp->offset = m->offset + 1;
			if (strcmp(commit, "each") == 0) {
				rd_kafka_resp_err_t ce = rd_kafka_commit(rk, next, 0);
				if (ce)
					emit(json_pack("{s:s,s:s}", "ev", "commit_error", "err", rd_kafka_err2str(ce)));
			}
		}
		rd_kafka_message_destroy(m);
	}
	if (strcmp(commit, "at") == 0) {
		json_t *offs = json_object();
		if (next->cnt > 0) {
			rd_kafka_resp_err_t ce = rd_kafka_commit(rk, next, 0);
			if (ce) {
				emit(json_pack("{s:s,s:s}", "ev", "error", "err", rd_kafka_err2str(ce)));
				return 1;
			}
		}
		for (int i = 0; i < next->cnt; i++) {
			char p[16];
			snprintf(p, sizeof p, "%d", next->elems[i].partition);
			json_object_set_new(offs, p, json_integer(next->elems[i].offset));
		}
		emit(json_pack("{s:s,s:o}", "ev", "commit", "offsets", offs));
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	emit(json_pack("{s:s,s:s}", "ev", "done", "reason", reason));
	rd_kafka_topic_partition_list_destroy(next);
	json_decref(spec);
	fclose(out);
	return 0;
}
