/* cmd_topics.c -- offline tools on a data directory: `topics`, `append`, `dump`. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compat.h"
#include "core/log.h"
#include "server/cli.h"
#include "storage/codec.h"
#include "storage/recordbatch.h"

static const char topics_usage[] =
	"Usage: factlog topics ACTION [FLAGS]\n"
	"\n"
	"Actions (offline: the data directory must not be in use by a running server):\n"
	"  list                                   topics with partitions, offsets and sizes\n"
	"  create NAME [--partitions N] [--config KEY=VALUE]...\n"
	"  describe NAME                          partitions, offsets and configs\n"
	"  alter NAME --config KEY=VALUE|KEY=     set or reset configs\n"
	"  add-partitions NAME --partitions N     grow to N partitions\n"
	"  delete NAME\n"
	"\n"
	"Flags:\n"
	"  --data DIR          data directory (default ./data)\n"
	"  --partitions N      partition count (default 1)\n"
	"  --config KEY=VALUE  segment.bytes, segment.ms, retention.bytes, retention.ms,\n"
	"                      max.message.bytes, index.interval.bytes, message.timestamp.type,\n"
	"                      cleanup.policy (delete), remote.storage.enable (true: archive sealed\n"
	"                      segments, see `factlog serve --archive`), local.retention.ms,\n"
	"                      local.retention.bytes (what stays on the local disk; -2: as retention.*)\n"
	"  --log-level LEVEL   debug, info, warn (default), error\n"
	"  -h, --help          this help\n";


typedef struct {
	partition_waiter_t w;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool done;
	err_t status;
} sync_waiter_t;

static void sync_done(partition_waiter_t *w, err_t status)
{
	sync_waiter_t *s = w->arg;
	pthread_mutex_lock(&s->mu);
	s->done = true;
	s->status = status;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

err_t cli_wait_durable(partition_t *p, int64_t offset)
{
	sync_waiter_t s = { .w = { .cb = sync_done }, .done = false };
	s.w.arg = &s;
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cond, NULL);
	int rc = partition_wait(p, offset, &s.w);
	if (rc == 0) {
		pthread_mutex_lock(&s.mu);
		while (!s.done)
			pthread_cond_wait(&s.cond, &s.mu);
		pthread_mutex_unlock(&s.mu);
		rc = s.status;
	} else if (rc == 1) {
		rc = OK;
	}
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.mu);
	return rc;
}

static void print_topic(storage_t *st, const char *name, bool configs);

static void list_one(void *arg, const char *name)
{
	print_topic(arg, name, false);
}

static void print_kv(void *arg, const char *key, const char *value)
{
	(void)arg;
	printf("  config %s=%s\n", key, value);
}

static void print_topic(storage_t *st, const char *name, bool configs)
{
	topic_t *t = storage_topic_get(st, name);
	if (t == NULL)
		return;
	int32_t n = topic_partition_count(t);
	printf("%s partitions=%" PRId32 "\n", name, n);
	for (int32_t i = 0; i < n; i++) {
		err_t oe;
		partition_t *p = topic_partition(t, i, &oe);
		if (p == NULL) {
			printf("  partition %" PRId32 " UNAVAILABLE: %s\n", i, err_str(oe));
			continue;
		}
		partition_info_t info;
		partition_info(p, &info);
		printf("  partition %" PRId32 " log_start=%" PRId64 " high_watermark=%" PRId64 " bytes=%" PRId64
		       " segments=%d%s\n",
		       i, info.log_start, info.hwm, info.size_bytes, info.segments, info.failed ? " FAILED" : "");
	}
	if (configs)
		topic_config_list(t, print_kv, NULL);
	topic_put(t);
}

static int fail_err(const char *what, err_t rc)
{
	fprintf(stderr, "factlog: %s: %s\n", what, err_str(rc));
	return 1;
}

int cmd_topics(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },   { "partitions", required_argument, NULL, 'p' },
		{ "config", required_argument, NULL, 'c' }, { "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },         { NULL, 0, NULL, 0 },
	};
	cli_storage_flags_t f = { .log_level = "warn" };
	long partitions = 1;
	topic_kv_t kv[64];
	int nkv = 0;
	int c;
	while ((c = getopt_long(argc, argv, "d:p:c:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': f.data_dir = optarg; break;
		case 'p': partitions = strtol(optarg, NULL, 10); break;
		case 'l': f.log_level = optarg; break;
		case 'c': {
			char *eq = strchr(optarg, '=');
			if (eq == NULL || nkv == 64) {
				fprintf(stderr, "factlog: --config expects KEY=VALUE, got '%s'\n", optarg);
				return 2;
			}
			*eq = 0;
			kv[nkv].key = optarg;
			kv[nkv].value = eq + 1;
			nkv++;
			break;
		}
		case 'h': fputs(topics_usage, stdout); return 0;
		default: fputs(topics_usage, stderr); return 2;
		}
	}
	if (optind >= argc) {
		fputs(topics_usage, stderr);
		return 2;
	}
	const char *action = argv[optind], *name = optind + 1 < argc ? argv[optind + 1] : NULL;
	bool needs_name = strcmp(action, "list") != 0;
	if ((needs_name && name == NULL) || optind + 1 + needs_name != argc) {
		fputs(topics_usage, stderr);
		return 2;
	}
	storage_opts_t o;
	int rc = cli_storage_opts(&f, &o);
	if (rc != 0)
		return rc;
	storage_t *st;
	err_t err = storage_open(&o, &st);
	if (err != OK)
		return fail_err(o.data_dir, err);
	rc = 0;
	if (strcmp(action, "list") == 0) {
		storage_topic_names(st, list_one, st);
	} else if (strcmp(action, "create") == 0) {
		err = storage_topic_create(st, name, (int32_t)partitions, kv, nkv);
		if (err != OK)
			rc = fail_err(name, err);
		else
			printf("created %s with %ld partitions\n", name, partitions);
	} else if (strcmp(action, "describe") == 0) {
		topic_t *t = storage_topic_get(st, name);
		if (t == NULL)
			rc = fail_err(name, ERR_NOT_FOUND);
		topic_put(t);
		if (rc == 0)
			print_topic(st, name, true);
	} else if (strcmp(action, "alter") == 0) {
		for (int i = 0; i < nkv && rc == 0; i++) {
			err = storage_topic_config_set(st, name, kv[i].key, kv[i].value[0] ? kv[i].value : NULL);
			if (err != OK)
				rc = fail_err(kv[i].key, err);
		}
	} else if (strcmp(action, "add-partitions") == 0) {
		err = storage_topic_add_partitions(st, name, (int32_t)partitions);
		if (err != OK)
			rc = fail_err(name, err);
	} else if (strcmp(action, "delete") == 0) {
		err = storage_topic_delete(st, name);
		if (err != OK)
			rc = fail_err(name, err);
	} else {
		fprintf(stderr, "factlog: unknown topics action '%s'\n", action);
		rc = 2;
	}
	storage_close(st);
	return rc;
}

/* --- append --- */

static const char append_usage[] =
	"Usage: factlog append --topic T [--partition P] [--key K] [--batch N] [--data DIR] [--flush POLICY]\n"
	"\n"
	"Appends each line of standard input as one record (value = the line, key = K if given) in batches of\n"
	"N lines (default 100). After each batch is durable it prints its receipt: 'TOPIC PARTITION OFFSET'\n"
	"for every record. Offline: the data directory must not be in use by a running server.\n";

static int append_batch(partition_t *p, const char *topic, int32_t part, rb_builder_t *b)
{
	if (b->count == 0)
		return 0;
	slice_t s = rb_builder_finish(b);
	partition_append_t res;
	err_t rc = partition_append(p, b->buf.data, s.len, NULL, &res);
	if (rc == OK)
		rc = cli_wait_durable(p, res.last_offset);
	if (rc != OK)
		return fail_err("append", rc);
	for (int64_t o = res.base_offset; o <= res.last_offset; o++)
		printf("%s %" PRId32 " %" PRId64 "\n", topic, part, o);
	fflush(stdout);
	return 0;
}

int cmd_append(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },     { "topic", required_argument, NULL, 't' },
		{ "partition", required_argument, NULL, 'p' }, { "key", required_argument, NULL, 'k' },
		{ "batch", required_argument, NULL, 'b' },    { "flush", required_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cli_storage_flags_t f = { .log_level = "warn" };
	const char *topic = NULL, *key = NULL;
	long part = 0, batch = 100;
	int c;
	while ((c = getopt_long(argc, argv, "d:t:p:k:b:f:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': f.data_dir = optarg; break;
		case 't': topic = optarg; break;
		case 'p': part = strtol(optarg, NULL, 10); break;
		case 'k': key = optarg; break;
		case 'b': batch = strtol(optarg, NULL, 10); break;
		case 'f': f.flush = optarg; break;
		case 'l': f.log_level = optarg; break;
		case 'h': fputs(append_usage, stdout); return 0;
		default: fputs(append_usage, stderr); return 2;
		}
	}
	if (topic == NULL || optind != argc || batch < 1 || batch > 100000) {
		fputs(append_usage, stderr);
		return 2;
	}
	storage_opts_t o;
	int rc = cli_storage_opts(&f, &o);
	if (rc != 0)
		return rc;
	storage_t *st;
	err_t err = storage_open(&o, &st);
	if (err != OK)
		return fail_err(o.data_dir, err);
	topic_t *t = storage_topic_get(st, topic);
	err_t oe = ERR_NOT_FOUND;
	partition_t *p = t ? topic_partition(t, (int32_t)part, &oe) : NULL;
	if (p == NULL) {
		rc = fail_err(topic, oe);
	} else {
		rb_builder_t b;
		rb_builder_init(&b, -1, -1, -1);
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		const clock_src_t *clk = clock_system();
		while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
			if (n > 0 && line[n - 1] == '\n')
				line[--n] = 0;
			rb_builder_add(&b, clock_wall_ms(clk), key ? slice_cstr(key) : slice_make(NULL, 0),
				       slice_make(line, (size_t)n), NULL, 0);
			if (b.count >= batch) {
				rc = append_batch(p, topic, (int32_t)part, &b);
				rb_builder_free(&b);
				rb_builder_init(&b, -1, -1, -1);
			}
		}
		if (rc == 0)
			rc = append_batch(p, topic, (int32_t)part, &b);
		rb_builder_free(&b);
		free(line);
	}
	topic_put(t);
	storage_close(st);
	return rc;
}

/* --- dump --- */

static const char dump_usage[] =
	"Usage: factlog dump --topic T [--partition P] [--from OFFSET] [--data DIR]\n"
	"\n"
	"Prints every record of a partition from OFFSET (default: the log start) as\n"
	"'OFFSET TIMESTAMP KEY VALUE' (null shown as -), compressed batches included.\n";

static int print_record(void *arg, const rb_header_t *h, const rb_record_t *rec, int64_t off, int64_t ts)
{
	(void)h;
	if (off < *(const int64_t *)arg)
		return 0;
	printf("%" PRId64 " %" PRId64 " %.*s %.*s\n", off, ts, rec->key_null ? 1 : (int)rec->key.len,
	       rec->key_null ? "-" : (const char *)rec->key.ptr, rec->value_null ? 1 : (int)rec->value.len,
	       rec->value_null ? "-" : (const char *)rec->value.ptr);
	return 0;
}

int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },     { "topic", required_argument, NULL, 't' },
		{ "partition", required_argument, NULL, 'p' }, { "from", required_argument, NULL, 'o' },
		{ "log-level", required_argument, NULL, 'l' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	cli_storage_flags_t f = { .log_level = "warn" };
	const char *topic = NULL;
	long part = 0;
	long long from = -1;
	int c;
	while ((c = getopt_long(argc, argv, "d:t:p:o:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd': f.data_dir = optarg; break;
		case 't': topic = optarg; break;
		case 'p': part = strtol(optarg, NULL, 10); break;
		case 'o': from = strtoll(optarg, NULL, 10); break;
		case 'l': f.log_level = optarg; break;
		case 'h': fputs(dump_usage, stdout); return 0;
		default: fputs(dump_usage, stderr); return 2;
		}
	}
	if (topic == NULL || optind != argc) {
		fputs(dump_usage, stderr);
		return 2;
	}
	storage_opts_t o;
	int rc = cli_storage_opts(&f, &o);
	if (rc != 0)
		return rc;
	storage_t *st;
	err_t err = storage_open(&o, &st);
	if (err != OK)
		return fail_err(o.data_dir, err);
	topic_t *t = storage_topic_get(st, topic);
	err_t oe = ERR_NOT_FOUND;
	partition_t *p = t ? topic_partition(t, (int32_t)part, &oe) : NULL;
	if (p == NULL) {
		rc = fail_err(topic, oe);
	} else {
		partition_info_t info;
		partition_info(p, &info);
		int64_t off = from < 0 ? info.log_start : from;
		buf_t b = { 0 }, scratch = { 0 };
		int64_t from_off = off;
		while (rc == 0 && off < info.hwm) {
			log_range_t r;
			err = partition_read(p, off, 1 << 20, &r);
			if (err == OK && r.len > 0) {
				b.len = 0;
				buf_reserve(&b, (size_t)r.len);
				err = log_range_copy(&r, io_posix(), b.data);
				if (err == OK)
					err = codec_walk_records(b.data, (size_t)r.len, &scratch, print_record, &from_off);
				off = r.next_offset;
			}
			log_range_release(&r);
			if (err != OK)
				rc = fail_err("read", err);
		}
		buf_free(&b);
		buf_free(&scratch);
	}
	topic_put(t);
	storage_close(st);
	return rc;
}
