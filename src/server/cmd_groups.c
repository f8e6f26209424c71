/*
 * cmd_groups.c -- `factlog groups list|describe`: consumer groups of a running broker, as Kafka users know
 * them from kafka-consumer-groups: members, assignments, committed offsets and lag (records and seconds).
 * It is a Kafka client (librdkafka), so it works against factlog or any Kafka-compatible cluster.
 */
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/compat.h"
#include "server/cli.h"

static const char groups_usage[] =
	"Usage: factlog groups list [--bootstrap HOST:PORT]\n"
	"       factlog groups describe GROUP [--bootstrap HOST:PORT]\n"
	"\n"
	"Lists consumer groups, or shows one group's members, their assigned partitions, committed offsets\n"
	"and lag: records behind the log end, and seconds behind (the age of the oldest unconsumed record).\n"
	"\n"
	"  --bootstrap H:P   a broker (default 127.0.0.1:9092)\n"
	"  --timeout-ms N    per request (default 10000)\n";

static rd_kafka_t *client(const char *bootstrap, rd_kafka_type_t type, const char *group)
{
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK ||
	    (group && rd_kafka_conf_set(conf, "group.id", group, err, sizeof err) != RD_KAFKA_CONF_OK) ||
	    (group && rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) != RD_KAFKA_CONF_OK)) {
		fprintf(stderr, "factlog: %s\n", err);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
	if (rk == NULL)
		fprintf(stderr, "factlog: %s\n", err);
	return rk;
}

/* Decodes a ConsumerProtocol assignment into "topic:p,p topic2:p" (best effort). */
static void assignment_str(const void *data, int size, char *out, size_t cap)
{
	reader_t r = reader_make(data, size > 0 ? (size_t)size : 0);
	size_t n = 0;
	out[0] = 0;
	reader_i16(&r);
	int32_t nt = reader_i32(&r);
	for (int32_t t = 0; t < nt && r.err == OK && nt <= 100000; t++) {
		int16_t len = reader_i16(&r);
		const uint8_t *name = reader_take(&r, len > 0 ? (size_t)len : 0);
		int32_t np = reader_i32(&r);
		if (r.err != OK || name == NULL)
			break;
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%.*s:", t ? " " : "", len, (const char *)name);
		for (int32_t i = 0; i < np && r.err == OK && np <= 100000; i++)
			n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%" PRId32, i ? "," : "", reader_i32(&r));
	}
	if (out[0] == 0)
		snprintf(out, cap, "-");
}

static int groups_list(const char *bootstrap, int timeout_ms)
{
	rd_kafka_t *rk = client(bootstrap, RD_KAFKA_PRODUCER, NULL);
	if (rk == NULL)
		return 1;
	const struct rd_kafka_group_list *list;
	rd_kafka_resp_err_t err = rd_kafka_list_groups(rk, NULL, &list, timeout_ms);
	if (err) {
		fprintf(stderr, "factlog: list groups: %s\n", rd_kafka_err2str(err));
		rd_kafka_destroy(rk);
		return 1;
	}
	printf("%-32s %-20s %-10s %s\n", "GROUP", "STATE", "PROTOCOL", "MEMBERS");
	for (int i = 0; i < list->group_cnt; i++) {
		const struct rd_kafka_group_info *g = &list->groups[i];
		printf("%-32s %-20s %-10s %d\n", g->group, g->state, g->protocol_type[0] ? g->protocol_type : "-",
		       g->member_cnt);
	}
	rd_kafka_group_list_destroy(list);
	rd_kafka_destroy(rk);
	return 0;
}

/* Committed offsets of every partition of every topic that the group has committed (OffsetFetch through a
 * consumer handle with the group's id; it does not join the group). */
static rd_kafka_topic_partition_list_t *committed(rd_kafka_t *rk, const char *bootstrap, const char *group,
						   int timeout_ms)
{
	const struct rd_kafka_metadata *md;
	if (rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms) != 0)
		return NULL;
	rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(64);
	for (int t = 0; t < md->topic_cnt; t++)
		for (int p = 0; p < md->topics[t].partition_cnt; p++)
			rd_kafka_topic_partition_list_add(all, md->topics[t].topic, md->topics[t].partitions[p].id);
	rd_kafka_metadata_destroy(md);
	rd_kafka_t *c = client(bootstrap, RD_KAFKA_CONSUMER, group);
	rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new(all->cnt + 1);
	if (c != NULL && rd_kafka_committed(c, all, timeout_ms) == 0) {
		for (int i = 0; i < all->cnt; i++)
			if (all->elems[i].offset >= 0)
				rd_kafka_topic_partition_list_add(out, all->elems[i].topic, all->elems[i].partition)->offset =
					all->elems[i].offset;
	}
	if (c != NULL)
		rd_kafka_destroy(c);
	rd_kafka_topic_partition_list_destroy(all);
	return out;
}

/* Seconds since the record at offset was written (0 if it cannot be read in time). */
static double seconds_behind(rd_kafka_t *consumer, const char *topic, int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *a = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(a, topic, partition)->offset = offset;
	double age = 0;
	if (rd_kafka_assign(consumer, a) == 0) {
		for (int i = 0; i < 20; i++) {
			rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
			if (m == NULL)
				continue;
			bool ours = m->err == 0 && m->partition == partition &&
				    strcmp(rd_kafka_topic_name(m->rkt), topic) == 0;
			if (ours) {
				rd_kafka_timestamp_type_t tt;
				int64_t ts = rd_kafka_message_timestamp(m, &tt);
				struct timespec now;
				clock_gettime(CLOCK_REALTIME, &now);
				if (ts > 0)
					age = (double)now.tv_sec + now.tv_nsec / 1e9 - (double)ts / 1000.0;
			}
			rd_kafka_message_destroy(m);
			if (ours)
				break;
		}
	}
	rd_kafka_assign(consumer, NULL);
	rd_kafka_topic_partition_list_destroy(a);
	return age < 0 ? 0 : age;
}

static const char *owner(const struct rd_kafka_group_info *g, const char *topic, int32_t partition, char *buf,
			 size_t cap)
{
	for (int i = 0; g && i < g->member_cnt; i++) {
		char a[4096], needle[300];
		assignment_str(g->members[i].member_assignment, g->members[i].member_assignment_size, a, sizeof a);
		snprintf(needle, sizeof needle, "%s:", topic);
		const char *at = strstr(a, needle);
		if (at == NULL)
			continue;
		at += strlen(needle);
		for (const char *p = at; *p && *p != ' ';) {
			char *end;
			long v = strtol(p, &end, 10);
			if (end == p)
				break;
			if (v == partition) {
				snprintf(buf, cap, "%s", g->members[i].member_id);
				return buf;
			}
			p = *end == ',' ? end + 1 : end;
		}
	}
	return "-";
}

static int groups_describe(const char *bootstrap, const char *group, int timeout_ms)
{
	rd_kafka_t *rk = client(bootstrap, RD_KAFKA_PRODUCER, NULL);
	rd_kafka_t *peek = client(bootstrap, RD_KAFKA_CONSUMER, "factlog-groups-describe");
	if (rk == NULL || peek == NULL)
		return 1;
	const struct rd_kafka_group_list *list = NULL;
	rd_kafka_resp_err_t err = rd_kafka_list_groups(rk, group, &list, timeout_ms);
	const struct rd_kafka_group_info *g = err == 0 && list->group_cnt > 0 ? &list->groups[0] : NULL;
	if (err) {
		fprintf(stderr, "factlog: describe group %s: %s\n", group, rd_kafka_err2str(err));
	} else {
		printf("group %s: state %s, protocol %s/%s, %d members\n", group, g ? g->state : "Dead",
		       g && g->protocol_type[0] ? g->protocol_type : "-", g && g->protocol[0] ? g->protocol : "-",
		       g ? g->member_cnt : 0);
		for (int i = 0; g && i < g->member_cnt; i++) {
			char a[4096];
			assignment_str(g->members[i].member_assignment, g->members[i].member_assignment_size, a, sizeof a);
			printf("  member %s client %s host %s assigned %s\n", g->members[i].member_id,
			       g->members[i].client_id, g->members[i].client_host, a);
		}
	}
	rd_kafka_topic_partition_list_t *offs = err ? NULL : committed(rk, bootstrap, group, timeout_ms);
	if (offs != NULL) {
		printf("\n%-24s %9s %14s %14s %10s %14s  %s\n", "TOPIC", "PARTITION", "CURRENT-OFFSET",
		       "LOG-END-OFFSET", "LAG", "SECONDS-BEHIND", "MEMBER");
		for (int i = 0; i < offs->cnt; i++) {
			rd_kafka_topic_partition_t *tp = &offs->elems[i];
			int64_t lo = -1, hi = -1;
			rd_kafka_query_watermark_offsets(rk, tp->topic, tp->partition, &lo, &hi, timeout_ms);
			int64_t lag = tp->offset >= 0 && hi >= 0 ? hi - tp->offset : -1;
			double behind = lag > 0 ? seconds_behind(peek, tp->topic, tp->partition, tp->offset) : 0;
			char who[300];
			printf("%-24s %9" PRId32 " %14" PRId64 " %14" PRId64 " %10" PRId64 " %14.1f  %s\n", tp->topic,
			       tp->partition, tp->offset, hi, lag, behind, owner(g, tp->topic, tp->partition, who, sizeof who));
		}
		rd_kafka_topic_partition_list_destroy(offs);
	}
	if (list)
		rd_kafka_group_list_destroy(list);
	rd_kafka_consumer_close(peek);
	rd_kafka_destroy(peek);
	rd_kafka_destroy(rk);
	return err ? 1 : 0;
}

int cmd_groups(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bootstrap", required_argument, NULL, 'b' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *bootstrap = "127.0.0.1:9092";
	int timeout_ms = 10000, c;
	while ((c = getopt_long(argc, argv, "b:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': bootstrap = optarg; break;
		case 't': timeout_ms = atoi(optarg); break;
		case 'h': fputs(groups_usage, stdout); return 0;
		default: fputs(groups_usage, stderr); return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "list") == 0 && optind + 1 == argc)
		return groups_list(bootstrap, timeout_ms);
	if (optind < argc && strcmp(argv[optind], "describe") == 0 && optind + 2 == argc)
		return groups_describe(bootstrap, argv[optind + 1], timeout_ms);
	fputs(groups_usage, stderr);
	return 2;
}
