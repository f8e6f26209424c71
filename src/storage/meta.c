/* meta.c -- topics and configs in SQLite. See meta.h. */
#include "storage/meta.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>

#include "core/compat.h"
#include "core/fl_assert.h"
#include "core/log.h"

struct meta {
	sqlite3 *db;
};

static const char *const schema =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS topics ("
	"  name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, created_ms INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS topic_configs ("
	"  topic TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (topic, key));"
	"CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS group_offsets (grp TEXT NOT NULL, topic TEXT NOT NULL,"
	"  partition INTEGER NOT NULL, committed INTEGER NOT NULL, metadata TEXT NOT NULL,"
	"  commit_ms INTEGER NOT NULL, PRIMARY KEY (grp, topic, partition));"
	"CREATE TABLE IF NOT EXISTS archive_deletions (prefix TEXT PRIMARY KEY, deleted_ms INTEGER NOT NULL);";

static err_t db_err(meta_t *m, const char *what)
{
	log_error("metadata store: %s: %s", what, sqlite3_errmsg(m->db));
	return ERR_META;
}

err_t meta_open(const char *path, meta_t **out)
{
	meta_t *m = calloc(1, sizeof *m);
	ASSERT(m != NULL);
	int rc = sqlite3_open_v2(path, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
				 NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(m->db, 5000);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(m->db, schema, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		log_error("metadata store %s: %s", path, m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
		sqlite3_close(m->db);
		free(m);
		return ERR_META;
	}
	*out = m;
	return OK;
}

void meta_close(meta_t *m)
{
	if (m == NULL)
		return;
	sqlite3_close(m->db);
	free(m);
}

/* Runs one statement with text/int64 bindings given by a format: 't' text, 'i' int64. */
static err_t exec(meta_t *m, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_err(m, sql);
	va_list ap;
	va_start(ap, fmt);
	for (int i = 0; fmt[i]; i++) {
		if (fmt[i] == 't')
			sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
	}
	va_end(ap);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return ERR_EXISTS;
	if (rc != SQLITE_DONE)
		return db_err(m, sql);
	return OK;
}

err_t meta_topic_create(meta_t *m, const char *name, int32_t partitions, int64_t created_ms,
			const meta_kv_t *configs, int nconfigs)
{
	if (sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(m, "BEGIN");
	err_t rc = exec(m, "INSERT INTO topics(name, partitions, created_ms) VALUES (?, ?, ?)", "tii", name,
			(int64_t)partitions, created_ms);
	for (int i = 0; rc == OK && i < nconfigs; i++)
		rc = exec(m, "INSERT OR REPLACE INTO topic_configs(topic, key, value) VALUES (?, ?, ?)", "ttt",
			  name, configs[i].key, configs[i].value);
	if (rc == OK && sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(m, "COMMIT");
	if (rc != OK)
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

err_t meta_topic_set_partitions(meta_t *m, const char *name, int32_t partitions)
{
	err_t rc = exec(m, "UPDATE topics SET partitions = ? WHERE name = ?", "it", (int64_t)partitions, name);
	if (rc == OK && sqlite3_changes(m->db) == 0)
		rc = ERR_NOT_FOUND;
	return rc;
}

err_t meta_topic_delete(meta_t *m, const char *name, const char *archive_prefix)
{
	if (sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(m, "BEGIN");
	err_t rc = exec(m, "DELETE FROM topics WHERE name = ?", "t", name);
	if (rc == OK && sqlite3_changes(m->db) == 0)
		rc = ERR_NOT_FOUND;
	if (rc == OK)
		rc = exec(m, "DELETE FROM topic_configs WHERE topic = ?", "t", name);
	if (rc == OK && archive_prefix != NULL)
		rc = exec(m, "INSERT OR REPLACE INTO archive_deletions(prefix, deleted_ms) "
			     "VALUES (?, CAST(strftime('%s', 'now') AS INTEGER) * 1000)", "t", archive_prefix);
	if (rc == OK && sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(m, "COMMIT");
	if (rc != OK)
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

err_t meta_config_set(meta_t *m, const char *topic, const char *key, const char *value)
{
	if (value == NULL)
		return exec(m, "DELETE FROM topic_configs WHERE topic = ? AND key = ?", "tt", topic, key);
	return exec(m, "INSERT OR REPLACE INTO topic_configs(topic, key, value) VALUES (?, ?, ?)", "ttt", topic,
		    key, value);
}

err_t meta_topic_list(meta_t *m, meta_topic_fn fn, void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, "SELECT name, partitions, created_ms FROM topics ORDER BY name", -1, &st,
			       NULL) != SQLITE_OK)
		return db_err(m, "list topics");
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(st, 0), (int32_t)sqlite3_column_int64(st, 1),
		   sqlite3_column_int64(st, 2));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? OK : db_err(m, "list topics");
}

err_t meta_config_list(meta_t *m, const char *topic, meta_config_fn fn, void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, "SELECT key, value FROM topic_configs WHERE topic = ? ORDER BY key", -1,
			       &st, NULL) != SQLITE_OK)
		return db_err(m, "list configs");
	sqlite3_bind_text(st, 1, topic, -1, SQLITE_TRANSIENT);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? OK : db_err(m, "list configs");
}

err_t meta_counter_add(meta_t *m, const char *name, int64_t delta, int64_t *before)
{
	if (sqlite3_exec(m->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(m, "BEGIN");
	err_t rc = exec(m, "INSERT OR IGNORE INTO counters(name, value) VALUES (?, 0)", "t", name);
	sqlite3_stmt *st = NULL;
	if (rc == OK && sqlite3_prepare_v2(m->db, "SELECT value FROM counters WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
		rc = db_err(m, "counter");
	if (rc == OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_ROW)
			*before = sqlite3_column_int64(st, 0);
		else
			rc = db_err(m, "counter");
	}
	sqlite3_finalize(st);
	if (rc == OK)
		rc = exec(m, "UPDATE counters SET value = value + ? WHERE name = ?", "it", delta, name);
	if (rc == OK && sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(m, "COMMIT");
	if (rc != OK)
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

err_t meta_offset_commit(meta_t *m, const char *group, const char *topic, int32_t partition, int64_t offset,
			 const char *metadata, int64_t commit_ms)
{
	return exec(m,
		    "INSERT OR REPLACE INTO group_offsets(grp, topic, partition, committed, metadata, commit_ms) "
		    "VALUES (?, ?, ?, ?, ?, ?)",
		    "ttiiti", group, topic, (int64_t)partition, offset, metadata ? metadata : "", commit_ms);
}

err_t meta_offset_list(meta_t *m, meta_offset_fn fn, void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db,
			       "SELECT grp, topic, partition, committed, metadata, commit_ms FROM group_offsets "
			       "ORDER BY grp, topic, partition",
			       -1, &st, NULL) != SQLITE_OK)
		return db_err(m, "list offsets");
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
		   (int32_t)sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
		   (const char *)sqlite3_column_text(st, 4), sqlite3_column_int64(st, 5));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? OK : db_err(m, "list offsets");
}

err_t meta_group_delete(meta_t *m, const char *group)
{
	return exec(m, "DELETE FROM group_offsets WHERE grp = ?", "t", group);
}

err_t meta_archive_deletion_list(meta_t *m, meta_prefix_fn fn, void *arg)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, "SELECT prefix FROM archive_deletions ORDER BY deleted_ms, prefix", -1, &st,
			       NULL) != SQLITE_OK)
		return db_err(m, "list archive deletions");
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(arg, (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? OK : db_err(m, "list archive deletions");
}

err_t meta_archive_deletion_done(meta_t *m, const char *prefix)
{
	return exec(m, "DELETE FROM archive_deletions WHERE prefix = ?", "t", prefix);
}

bool meta_archive_deletion_pending(meta_t *m, const char *prefix)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(m->db, "SELECT 1 FROM archive_deletions WHERE prefix = ?", -1, &st, NULL) != SQLITE_OK) {
		db_err(m, "archive deletion");
		return true; /* the caller picks another prefix */
	}
	sqlite3_bind_text(st, 1, prefix, -1, SQLITE_TRANSIENT);
	bool found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}
