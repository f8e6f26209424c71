/*
 * appfile.c -- the app file parser. See appfile.h for the format.
 *
 * Two passes. load_tree() turns libyaml's events into a small tree of nodes that remember where they
 * start (libyaml's marks are 0-based; ours are 1-based, as editors count). The walk then reads that tree
 * with typed accessors that know the dotted path of the field they read, so every error names the file,
 * the line, the column and the field ("functions.shelf.triggers[0].batch_size").
 *
 * Invariants:
 *   1. The tree is at most DEPTH_MAX collections deep, so the recursive walks and frees are bounded.
 *   2. Aliases are refused while loading, so the tree is a tree: no node is shared, and walking it costs
 *      no more than the input's size (no "billion laughs"). Anchors alone are harmless and ignored.
 *   3. The first error wins: fail() writes err once, and every step returns false up the chain.
 *   4. The app_t being built is always freeable: arrays are zeroed with their counts set before they are
 *      filled, so app_free() releases a half-built app on every error path.
 *   5. Every count read from the input is capped (ENTRIES_MAX) before allocating or looping over pairs.
 * Scalars: a scalar is "plain" when written without quotes or a tag; only plain scalars can be null, and
 * only they become JSON numbers, booleans and null in filters (YAML 1.2 core schema spellings).
 * Null values: a null where a mapping is expected reads as an empty mapping (defaults); a null where a
 * scalar is expected is an error.
 * Ownership: the tree belongs to app_parse and is freed before it returns; strings are copied out of it.
 * Thread: any; no globals.
 */
#include "runtime/appfile.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/compat.h"
#include "core/fl_assert.h"

enum {
	FILE_BYTES_MAX = 1 << 20, /* larger inputs are refused before parsing */
	DEPTH_MAX = 64,           /* nested mappings and sequences */
	ENTRIES_MAX = 1000,       /* streams, functions, and each function's triggers and env */
	TOPIC_LEN_MAX = 249,      /* Kafka's limit */
	FN_NAME_LEN_MAX = 64,
	GROUP_LEN_MAX = 255,
	ENV_NAME_LEN_MAX = 255,
	PATH_CAP = 512,
};

/* --- the tree ------------------------------------------------------------------------------------- */

typedef enum { N_SCALAR, N_MAP, N_SEQ } node_kind_t;

typedef struct node node_t;
struct node {
	node_kind_t kind;
	int line, col;  /* 1-based */
	bool plain;     /* scalar written without quotes or tag */
	char *str;      /* scalar text, NUL-terminated; escapes may put NULs inside (len counts them) */
	size_t len;
	node_t **kids;  /* mapping: key, value, key, value...; sequence: the items */
	int nkids, cap;
};

typedef struct {
	const char *file;  /* for messages */
	const char *text;  /* the input, to place reader errors */
	size_t len;
	char *err;
	size_t errcap;
	bool failed;
	char path[PATH_CAP]; /* the dotted path of the field being read */
	size_t plen;
} ctx_t;

static void *xcalloc(size_t n, size_t size)
{
	if (n == 0)
		return NULL;
	void *p = calloc(n, size);
	ASSERT(p != NULL);
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	ASSERT(p != NULL);
	return p;
}

static void node_free(node_t *n)
{
	if (n == NULL)
		return;
	for (int i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->str);
	free(n);
}

static void node_add(node_t *parent, node_t *kid)
{
	if (parent->nkids == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 4;
		parent->kids = realloc(parent->kids, (size_t)parent->cap * sizeof *parent->kids);
		ASSERT(parent->kids != NULL);
	}
	parent->kids[parent->nkids++] = kid;
}

/* --- errors and paths ------------------------------------------------------------------------------ */

__attribute__((format(printf, 4, 5))) static bool fail_at(ctx_t *c, int line, int col, const char *fmt, ...)
{
	if (c->failed)
		return false;
	c->failed = true;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->plen > 0)
		snprintf(c->err, c->errcap, "%s:%d:%d: %s: %s", c->file, line, col, c->path, msg);
	else
		snprintf(c->err, c->errcap, "%s:%d:%d: %s", c->file, line, col, msg);
	return false;
}

#define fail(c, n, ...) fail_at((c), (n)->line, (n)->col, __VA_ARGS__)

/* Appends ".key" (or "key" at the top) to the path; returns the length to restore with path_pop. */
static size_t path_key(ctx_t *c, const char *key)
{
	size_t old = c->plen;
	int n = snprintf(c->path + old, sizeof c->path - old, "%s%s", old ? "." : "", key);
	if (n > 0)
		c->plen = old + (size_t)n < sizeof c->path ? old + (size_t)n : sizeof c->path - 1;
	return old;
}

static size_t path_index(ctx_t *c, int i)
{
	size_t old = c->plen;
	int n = snprintf(c->path + old, sizeof c->path - old, "[%d]", i);
	if (n > 0)
		c->plen = old + (size_t)n < sizeof c->path ? old + (size_t)n : sizeof c->path - 1;
	return old;
}

static void path_pop(ctx_t *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

/* --- loading: libyaml events to a tree -------------------------------------------------------------- */

static bool yaml_fail(ctx_t *c, const yaml_parser_t *p)
{
	int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
	if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		size_t end = p->problem_offset < c->len ? p->problem_offset : c->len;
		line = 1;
		col = 1;
		for (size_t i = 0; i < end; i++) {
			if (c->text[i] == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
	}
	const char *problem = p->problem != NULL ? p->problem : "invalid YAML";
	if (p->error == YAML_MEMORY_ERROR)
		problem = "out of memory";
	if (p->context != NULL)
		return fail_at(c, line, col, "%s (%s at %d:%d)", problem, p->context, (int)p->context_mark.line + 1,
			       (int)p->context_mark.column + 1);
	return fail_at(c, line, col, "%s", problem);
}

/* Handles one event; *root, stack and *depth describe the tree built so far. New nodes are attached to
 * their parent before anything else can fail, so freeing *root always frees everything. */
static bool load_event(ctx_t *c, const yaml_event_t *ev, node_t **root, node_t **stack, int *depth, int *docs)
{
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	node_kind_t kind;
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++*docs > 1)
			return fail_at(c, line, col, "only one YAML document is allowed");
		return true;
	case YAML_ALIAS_EVENT:
		return fail_at(c, line, col, "aliases (*%s) are not supported", (const char *)ev->data.alias.anchor);
	case YAML_SCALAR_EVENT:
		kind = N_SCALAR;
		break;
	case YAML_MAPPING_START_EVENT:
		kind = N_MAP;
		break;
	case YAML_SEQUENCE_START_EVENT:
		kind = N_SEQ;
		break;
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		ASSERT(*depth > 0);
		--*depth;
		return true;
	default:
		return true;
	}
	if (kind != N_SCALAR && *depth == DEPTH_MAX)
		return fail_at(c, line, col, "nested deeper than %d levels", DEPTH_MAX);
	node_t *n = xcalloc(1, sizeof *n);
	n->kind = kind;
	n->line = line;
	n->col = col;
	if (*depth == 0) {
		ASSERT(*root == NULL);
		*root = n;
	} else {
		node_add(stack[*depth - 1], n);
	}
	if (kind == N_SCALAR) {
		n->len = ev->data.scalar.length;
		n->str = malloc(n->len + 1);
		ASSERT(n->str != NULL);
		if (n->len > 0)
			memcpy(n->str, ev->data.scalar.value, n->len);
		n->str[n->len] = '\0';
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit;
	} else {
		stack[(*depth)++] = n;
	}
	return true;
}

/* Parses the YAML into a tree; *out is NULL for an empty stream. */
static bool load_tree(ctx_t *c, node_t **out)
{
	yaml_parser_t p;
	if (!yaml_parser_initialize(&p))
		return fail_at(c, 1, 1, "out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)c->text, c->len);
	node_t *root = NULL;
	node_t *stack[DEPTH_MAX];
	int depth = 0, docs = 0;
	bool ok = true, done = false;
	while (ok && !done) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			ok = yaml_fail(c, &p);
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		ok = load_event(c, &ev, &root, stack, &depth, &docs);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (!ok) {
		node_free(root);
		return false;
	}
	*out = root;
	return true;
}

/* --- scalars ---------------------------------------------------------------------------------------- */

static bool text_is(const node_t *n, const char *s)
{
	return n->kind == N_SCALAR && n->len == strlen(s) && memcmp(n->str, s, n->len) == 0;
}

static bool is_null(const node_t *n)
{
	return n->kind == N_SCALAR && n->plain &&
	       (n->len == 0 || text_is(n, "~") || text_is(n, "null") || text_is(n, "Null") || text_is(n, "NULL"));
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* An optional '-' and decimal digits. Returns 1 (parsed), 0 (not an integer) or -1 (too large). */
static int parse_int(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	bool neg = len > 0 && s[0] == '-';
	if (neg)
		i++;
	if (i == len)
		return 0;
	int64_t v = 0;
	bool big = false;
	for (; i < len; i++) {
		if (!is_digit(s[i]))
			return 0;
		int d = s[i] - '0';
		if (v > (INT64_MAX - d) / 10)
			big = true;
		else
			v = v * 10 + d;
	}
	if (big)
		return -1;
	*out = neg ? -v : v;
	return 1;
}

typedef struct {
	const char *name;
	int64_t mult;
} unit_t;

static const unit_t duration_units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
					 { "d", 86400000 }, { NULL, 0 } };
static const unit_t size_units[] = { { "KiB", 1024 }, { "MiB", 1024 * 1024 }, { "GiB", 1024 * 1024 * 1024 },
				     { NULL, 0 } };

/* Decimal digits, then nothing or one of the units. Returns 1 (parsed), 0 (malformed) or -1 (too large). */
static int parse_with_unit(const char *s, size_t len, const unit_t *units, int64_t *out)
{
	size_t i = 0;
	int64_t v = 0;
	bool big = false;
	for (; i < len && is_digit(s[i]); i++) {
		int d = s[i] - '0';
		if (v > (INT64_MAX - d) / 10)
			big = true;
		else
			v = v * 10 + d;
	}
	if (i == 0)
		return 0;
	int64_t mult = 1;
	if (i < len) {
		const unit_t *u = units;
		while (u->name != NULL && !(strlen(u->name) == len - i && memcmp(u->name, s + i, len - i) == 0))
			u++;
		if (u->name == NULL)
			return 0;
		mult = u->mult;
	}
	if (big || v > INT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 1;
}

/* Milliseconds in the largest unit that divides them: 900000 -> "15m". */
static void format_ms(char *buf, size_t cap, int64_t ms)
{
	for (int i = 4; i >= 1; i--) {
		if (ms != 0 && ms % duration_units[i].mult == 0) {
			snprintf(buf, cap, "%lld%s", (long long)(ms / duration_units[i].mult), duration_units[i].name);
			return;
		}
	}
	snprintf(buf, cap, "%lldms", (long long)ms);
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* n fixed digits at s; -1 when one is not a digit. */
static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* RFC 3339: 2026-01-01T00:00:00[.fraction](Z|+hh:mm|-hh:mm); 't', 'z' and a space for 'T' are accepted.
 * Fractions below the millisecond are truncated. Returns false when malformed or before 1970. */
static bool parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return false;
	int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
	int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] || hour < 0 || hour > 23 || min < 0 ||
	    min > 59 || sec < 0 || sec > 60)
		return false;
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (mon == 2 && day == 29 && !leap)
		return false;
	size_t i = 19;
	int64_t frac_ms = 0;
	if (s[i] == '.') {
		size_t start = ++i;
		for (; i < len && is_digit(s[i]); i++)
			if (i - start < 3)
				frac_ms = frac_ms * 10 + (s[i] - '0');
		if (i == start)
			return false;
		for (size_t k = i - start; k < 3; k++)
			frac_ms *= 10;
	}
	int64_t offset_min = 0;
	if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
		/* UTC */
	} else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
		int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return false;
		offset_min = (s[i] == '-' ? -1 : 1) * (oh * 60 + om);
	} else {
		return false; /* the offset is required */
	}
	int64_t secs = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec - offset_min * 60;
	if (secs < 0)
		return false;
	*out_ms = secs * 1000 + frac_ms;
	return true;
}

bool app_parse_time(const char *s, size_t len, int64_t *out_ms)
{
	return parse_rfc3339(s, len, out_ms);
}

static bool valid_topic(const char *s, size_t len)
{
	if (len < 1 || len > TOPIC_LEN_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '.' || ch == '_' ||
		      ch == '-'))
			return false;
	}
	return true;
}

static bool valid_fn_name(const char *s, size_t len)
{
	if (len < 1 || len > FN_NAME_LEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static bool valid_env_name(const char *s, size_t len)
{
	if (len < 1 || len > ENV_NAME_LEN_MAX || is_digit(s[0]))
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '_'))
			return false;
	}
	return true;
}

static bool valid_group(const char *s, size_t len)
{
	if (len < 1 || len > GROUP_LEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool valid_url(const char *s, size_t len)
{
	size_t skip = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
	if (skip == 0 || len == skip)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* --- typed accessors: each reads one value node at the current path ---------------------------------- */

/* A non-null scalar without NUL bytes (so it can be used as a C string). */
static bool want_text(ctx_t *c, const node_t *n)
{
	if (n->kind != N_SCALAR || is_null(n))
		return fail(c, n, "expected a string");
	if (strlen(n->str) != n->len)
		return fail(c, n, "contains a NUL character");
	return true;
}

typedef enum { S_TEXT, S_URL, S_TOPIC, S_GROUP } str_kind_t;

static bool get_str(ctx_t *c, const node_t *n, str_kind_t kind, char **out)
{
	if (!want_text(c, n))
		return false;
	switch (kind) {
	case S_TEXT:
		if (n->len == 0)
			return fail(c, n, "expected a non-empty string");
		break;
	case S_URL:
		if (!valid_url(n->str, n->len))
			return fail(c, n, "expected an http:// or https:// URL");
		break;
	case S_TOPIC:
		if (!valid_topic(n->str, n->len))
			return fail(c, n, "invalid topic name \"%s\" (1 to %d of A-Z a-z 0-9 . _ -)", n->str,
				    TOPIC_LEN_MAX);
		break;
	case S_GROUP:
		if (!valid_group(n->str, n->len))
			return fail(c, n, "invalid group name (1 to %d bytes, no control characters)", GROUP_LEN_MAX);
		break;
	}
	ASSERT(*out == NULL);
	*out = xstrdup(n->str);
	return true;
}

typedef enum { V_INT, V_DURATION, V_SIZE } num_kind_t;

static bool get_num(ctx_t *c, const node_t *n, num_kind_t kind, int64_t lo, int64_t hi, int64_t *out)
{
	static const char *const expected[] = {
		[V_INT] = "expected an integer",
		[V_DURATION] = "expected a duration: milliseconds, or a number with a unit (ms, s, m, h, d)",
		[V_SIZE] = "expected a size: bytes, or a number with a unit (KiB, MiB, GiB)",
	};
	if (n->kind != N_SCALAR || is_null(n))
		return fail(c, n, "%s", expected[kind]);
	int64_t v = 0;
	int r = kind == V_INT ? parse_int(n->str, n->len, &v)
			      : parse_with_unit(n->str, n->len, kind == V_SIZE ? size_units : duration_units, &v);
	if (r == 0)
		return fail(c, n, "%s", expected[kind]);
	if (r > 0 && v >= lo && v <= hi) {
		*out = v;
		return true;
	}
	char a[32], b[32];
	if (kind == V_DURATION) {
		format_ms(a, sizeof a, lo);
		format_ms(b, sizeof b, hi);
	} else {
		snprintf(a, sizeof a, "%lld", (long long)lo);
		snprintf(b, sizeof b, "%lld", (long long)hi);
	}
	if (hi == INT64_MAX)
		return fail(c, n, "out of range: expected at least %s", a);
	return fail(c, n, "out of range: expected %s to %s", a, b);
}

/* The optional fields of a mapping, each read at its own path; an absent field keeps its default. */
static bool field_str(ctx_t *c, const char *name, const node_t *v, str_kind_t kind, char **out)
{
	if (v == NULL)
		return true;
	size_t old = path_key(c, name);
	bool ok = get_str(c, v, kind, out);
	path_pop(c, old);
	return ok;
}

static bool field_i64(ctx_t *c, const char *name, const node_t *v, num_kind_t kind, int64_t lo, int64_t hi,
		      int64_t *out)
{
	if (v == NULL)
		return true;
	size_t old = path_key(c, name);
	bool ok = get_num(c, v, kind, lo, hi, out);
	path_pop(c, old);
	return ok;
}

static bool field_int(ctx_t *c, const char *name, const node_t *v, int lo, int hi, int *out)
{
	int64_t x = *out;
	if (!field_i64(c, name, v, V_INT, lo, hi, &x))
		return false;
	*out = (int)x;
	return true;
}

/* Checks that n is a mapping (a null reads as an empty one) whose keys are unique strings among names
 * (NULL-terminated), and points vals[i] at the value of names[i], NULL when absent. */
static bool get_fields(ctx_t *c, const node_t *n, const char *const *names, const node_t **vals)
{
	int count = 0;
	while (names[count] != NULL)
		vals[count++] = NULL;
	if (is_null(n))
		return true;
	if (n->kind != N_MAP)
		return fail(c, n, "expected a mapping");
	for (int i = 0; i + 1 < n->nkids; i += 2) {
		const node_t *k = n->kids[i];
		if (k->kind != N_SCALAR)
			return fail(c, k, "expected a string key");
		int f = 0;
		while (f < count && !text_is(k, names[f]))
			f++;
		if (f == count) {
			char list[256];
			size_t used = 0;
			for (int j = 0; j < count && used < sizeof list; j++) {
				int w = snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", names[j]);
				used += w > 0 ? (size_t)w : 0;
			}
			path_key(c, k->str);
			return fail(c, k, "unknown field (expected %s)", list);
		}
		if (vals[f] != NULL)
			return fail(c, k, "duplicate key \"%s\"", k->str);
		vals[f] = n->kids[i + 1];
	}
	return true;
}

/* Checks that n is a mapping (or null: none) of at most ENTRIES_MAX unique string keys; *count gets their
 * number. The pairs are n->kids[2i], n->kids[2i + 1]. */
static bool get_entries(ctx_t *c, const node_t *n, int *count)
{
	*count = 0;
	if (is_null(n))
		return true;
	if (n->kind != N_MAP)
		return fail(c, n, "expected a mapping");
	int m = n->nkids / 2;
	if (m > ENTRIES_MAX)
		return fail(c, n, "too many entries (at most %d)", ENTRIES_MAX);
	for (int i = 0; i < m; i++) {
		const node_t *k = n->kids[2 * i];
		if (k->kind != N_SCALAR)
			return fail(c, k, "expected a string key");
		for (int j = 0; j < i; j++) {
			const node_t *o = n->kids[2 * j];
			if (o->len == k->len && memcmp(o->str, k->str, k->len) == 0)
				return fail(c, k, "duplicate key \"%s\"", k->str);
		}
	}
	*count = m;
	return true;
}

/* --- filters: YAML to JSON --------------------------------------------------------------------------- */

/* YAML 1.2 core schema floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool looks_float(const char *s, size_t len)
{
	size_t i = 0, before = 0, after = 0;
	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	for (; i < len && is_digit(s[i]); i++)
		before++;
	if (i < len && s[i] == '.') {
		for (i++; i < len && is_digit(s[i]); i++)
			after++;
	}
	if (before == 0 && after == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		size_t exp = 0;
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		for (; i < len && is_digit(s[i]); i++)
			exp++;
		if (exp == 0)
			return false;
	}
	return i == len;
}

static json_t *scalar_json(ctx_t *c, const node_t *n)
{
	if (n->plain) {
		if (is_null(n))
			return json_null();
		if (text_is(n, "true") || text_is(n, "True") || text_is(n, "TRUE"))
			return json_true();
		if (text_is(n, "false") || text_is(n, "False") || text_is(n, "FALSE"))
			return json_false();
		int64_t v;
		const char *s = n->str;
		size_t len = n->len;
		if (len > 1 && s[0] == '+' && is_digit(s[1])) {
			s++;
			len--;
		}
		if (parse_int(s, len, &v) == 1)
			return json_integer(v);
		if (looks_float(n->str, n->len)) {
			double d = strtod(n->str, NULL);
			if (!isfinite(d)) {
				fail(c, n, "number out of range");
				return NULL;
			}
			return json_real(d);
		}
	}
	json_t *j = json_stringn(n->str, n->len);
	if (j == NULL)
		fail(c, n, "invalid UTF-8");
	return j;
}

static json_t *to_json(ctx_t *c, const node_t *n);

static json_t *map_json(ctx_t *c, const node_t *n)
{
	json_t *obj = json_object();
	ASSERT(obj != NULL);
	for (int i = 0; i + 1 < n->nkids; i += 2) {
		const node_t *k = n->kids[i];
		if (k->kind != N_SCALAR || strlen(k->str) != k->len) {
			fail(c, k, "expected a string key");
			goto bad;
		}
		if (json_object_get(obj, k->str) != NULL) {
			fail(c, k, "duplicate key \"%s\"", k->str);
			goto bad;
		}
		size_t old = path_key(c, k->str);
		json_t *v = to_json(c, n->kids[i + 1]);
		if (v == NULL)
			goto bad;
		path_pop(c, old);
		if (json_object_set_new(obj, k->str, v) != 0) {
			fail(c, k, "invalid UTF-8");
			goto bad;
		}
	}
	return obj;
bad:
	json_decref(obj);
	return NULL;
}

static json_t *to_json(ctx_t *c, const node_t *n)
{
	if (n->kind == N_SCALAR)
		return scalar_json(c, n);
	if (n->kind == N_MAP)
		return map_json(c, n);
	json_t *arr = json_array();
	ASSERT(arr != NULL);
	for (int i = 0; i < n->nkids; i++) {
		size_t old = path_index(c, i);
		json_t *v = to_json(c, n->kids[i]);
		if (v == NULL) {
			json_decref(arr);
			return NULL;
		}
		path_pop(c, old);
		json_array_append_new(arr, v);
	}
	return arr;
}

static bool get_filter(ctx_t *c, const node_t *n, fn_trigger_t *t)
{
	if (n->kind != N_MAP)
		return fail(c, n, "expected a mapping");
	t->filter_json = to_json(c, n);
	if (t->filter_json == NULL)
		return false;
	char ferr[256] = "";
	t->filter = filter_compile(t->filter_json, ferr, sizeof ferr);
	if (t->filter == NULL)
		return fail(c, n, "%s", ferr);
	return true;
}

/* --- the app ------------------------------------------------------------------------------------------ */

static bool get_start(ctx_t *c, const node_t *n, fn_trigger_t *t)
{
	if (n->kind == N_SCALAR && !is_null(n)) {
		int64_t ms;
		if (text_is(n, "earliest")) {
			t->start = FN_START_EARLIEST;
			return true;
		}
		if (text_is(n, "latest")) {
			t->start = FN_START_LATEST;
			return true;
		}
		if ((parse_int(n->str, n->len, &ms) == 1 && ms >= 0) || parse_rfc3339(n->str, n->len, &ms)) {
			t->start = FN_START_TIME;
			t->start_time_ms = ms;
			return true;
		}
	}
	return fail(c, n, "expected earliest, latest, an RFC 3339 time or epoch milliseconds");
}

static bool get_ordering(ctx_t *c, const node_t *n, fn_trigger_t *t)
{
	if (text_is(n, "key"))
		t->ordering = FN_ORDER_KEY;
	else if (text_is(n, "partition"))
		t->ordering = FN_ORDER_PARTITION;
	else if (text_is(n, "none"))
		t->ordering = FN_ORDER_NONE;
	else
		return fail(c, n, "expected key, partition or none");
	return true;
}

static const char *const retry_fields[] = { "attempts", "base", "max", NULL };

static bool get_retry(ctx_t *c, const node_t *n, fn_trigger_t *t)
{
	const node_t *v[3];
	if (!get_fields(c, n, retry_fields, v))
		return false;
	if (!field_int(c, "attempts", v[0], 1, 1000, &t->retry_attempts) ||
	    !field_i64(c, "base", v[1], V_DURATION, 1, 3600000, &t->retry_base_ms) ||
	    !field_i64(c, "max", v[2], V_DURATION, 1, 86400000, &t->retry_max_ms))
		return false;
	if (v[2] == NULL && t->retry_max_ms < t->retry_base_ms)
		t->retry_max_ms = t->retry_base_ms; /* a long base alone should not make the default max an error */
	if (t->retry_max_ms < t->retry_base_ms) {
		char b[32];
		format_ms(b, sizeof b, t->retry_base_ms);
		path_key(c, "max");
		return fail(c, v[2], "must be at least base (%s)", b);
	}
	return true;
}

enum { T_STREAM, T_GROUP, T_BATCH_SIZE, T_BATCH_WINDOW, T_START, T_ORDERING, T_CONCURRENCY, T_FILTER, T_RETRY,
       T_MAX_AGE, T_ON_FAILURE, T_COUNT };
static const char *const trigger_fields[] = { "stream", "group", "batch_size", "batch_window", "start", "ordering",
					      "concurrency", "filter", "retry", "max_age", "on_failure", NULL };

/* Reads a field whose value needs its own accessor (fn) at its path. */
static bool field_with(ctx_t *c, const char *name, const node_t *v, fn_trigger_t *t,
		       bool (*fn)(ctx_t *, const node_t *, fn_trigger_t *))
{
	if (v == NULL)
		return true;
	size_t old = path_key(c, name);
	bool ok = fn(c, v, t);
	path_pop(c, old);
	return ok;
}

static bool get_trigger(ctx_t *c, const node_t *n, fn_trigger_t *t)
{
	t->line = n->line;
	t->batch_size = 100;
	t->start = FN_START_LATEST;
	t->ordering = FN_ORDER_KEY;
	t->concurrency = 1;
	t->retry_attempts = 3;
	t->retry_base_ms = 100;
	t->retry_max_ms = 10000;
	const node_t *v[T_COUNT];
	if (!get_fields(c, n, trigger_fields, v))
		return false;
	if (v[T_STREAM] == NULL)
		return fail(c, n, "missing field \"stream\"");
	if (v[T_FILTER] != NULL && is_null(v[T_FILTER]))
		v[T_FILTER] = NULL;
	return field_str(c, "stream", v[T_STREAM], S_TOPIC, &t->stream) &&
	       field_str(c, "group", v[T_GROUP], S_GROUP, &t->group) &&
	       field_int(c, "batch_size", v[T_BATCH_SIZE], 1, 10000, &t->batch_size) &&
	       field_i64(c, "batch_window", v[T_BATCH_WINDOW], V_DURATION, 0, 300000, &t->batch_window_ms) &&
	       field_with(c, "start", v[T_START], t, get_start) &&
	       field_with(c, "ordering", v[T_ORDERING], t, get_ordering) &&
	       field_int(c, "concurrency", v[T_CONCURRENCY], 1, 1000, &t->concurrency) &&
	       field_with(c, "retry", v[T_RETRY], t, get_retry) &&
	       field_i64(c, "max_age", v[T_MAX_AGE], V_DURATION, 0, INT64_MAX, &t->max_age_ms) &&
	       field_str(c, "on_failure", v[T_ON_FAILURE], S_TOPIC, &t->on_failure) &&
	       field_with(c, "filter", v[T_FILTER], t, get_filter);
}

/* The default groups (the function's name; NAME.STREAM when it has several triggers), then no two
 * triggers may read one stream as one group: they would split its partitions between them. */
static bool finish_triggers(ctx_t *c, const node_t *seq, fn_def_t *fn)
{
	for (int i = 0; i < fn->ntriggers; i++) {
		fn_trigger_t *t = &fn->triggers[i];
		if (t->group != NULL)
			continue;
		if (fn->ntriggers == 1) {
			t->group = xstrdup(fn->name);
		} else {
			size_t len = strlen(fn->name) + 1 + strlen(t->stream) + 1;
			t->group = malloc(len);
			ASSERT(t->group != NULL);
			snprintf(t->group, len, "%s.%s", fn->name, t->stream);
		}
	}
	for (int i = 1; i < fn->ntriggers; i++) {
		const fn_trigger_t *t = &fn->triggers[i];
		for (int j = 0; j < i; j++) {
			const fn_trigger_t *o = &fn->triggers[j];
			if (strcmp(t->stream, o->stream) == 0 && strcmp(t->group, o->group) == 0) {
				path_index(c, i);
				return fail(c, seq->kids[i], "triggers[%d] already reads stream \"%s\" with group "
					    "\"%s\"", j, t->stream, t->group);
			}
		}
	}
	return true;
}

static bool get_triggers(ctx_t *c, const node_t *n, fn_def_t *fn)
{
	if (n->kind != N_SEQ || n->nkids == 0)
		return fail(c, n, "expected a non-empty sequence of triggers");
	if (n->nkids > ENTRIES_MAX)
		return fail(c, n, "too many triggers (at most %d)", ENTRIES_MAX);
	fn->triggers = xcalloc((size_t)n->nkids, sizeof *fn->triggers);
	fn->ntriggers = n->nkids;
	for (int i = 0; i < n->nkids; i++) {
		size_t old = path_index(c, i);
		if (!get_trigger(c, n->kids[i], &fn->triggers[i]))
			return false;
		path_pop(c, old);
	}
	return finish_triggers(c, n, fn);
}

static bool get_env(ctx_t *c, const node_t *n, fn_def_t *fn)
{
	int count;
	if (!get_entries(c, n, &count))
		return false;
	fn->env = xcalloc((size_t)count, sizeof *fn->env);
	fn->nenv = count;
	for (int i = 0; i < count; i++) {
		const node_t *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (!valid_env_name(k->str, k->len))
			return fail(c, k, "invalid variable name \"%s\" (a letter or _, then letters, digits or _)",
				    k->str);
		size_t old = path_key(c, k->str);
		if (!want_text(c, v))
			return false;
		path_pop(c, old);
		size_t len = k->len + 1 + v->len + 1;
		fn->env[i] = malloc(len);
		ASSERT(fn->env[i] != NULL);
		snprintf(fn->env[i], len, "%s=%s", k->str, v->str);
	}
	return true;
}

static const char *const scale_fields[] = { "min", "max", "idle", NULL };

static bool get_scale(ctx_t *c, const node_t *n, fn_def_t *fn)
{
	const node_t *v[3];
	if (!get_fields(c, n, scale_fields, v))
		return false;
	if (!field_int(c, "min", v[0], 0, 1000, &fn->min_workers) ||
	    !field_int(c, "max", v[1], 1, 1000, &fn->max_workers) ||
	    !field_i64(c, "idle", v[2], V_DURATION, 0, 86400000, &fn->idle_ms))
		return false;
	if (v[1] == NULL && fn->max_workers < fn->min_workers)
		fn->max_workers = fn->min_workers; /* min alone raises the default max rather than failing */
	if (fn->max_workers < fn->min_workers) {
		path_key(c, "max");
		return fail(c, v[1], "must be at least min (%d)", fn->min_workers);
	}
	return true;
}

enum { F_RUN, F_HTTP, F_ENV, F_TIMEOUT, F_SCALE, F_TRIGGERS, F_COUNT };
static const char *const function_fields[] = { "run", "http", "env", "timeout", "scale", "triggers", NULL };

/* Reads a function-level field with its own accessor at its path. */
static bool fn_field(ctx_t *c, const char *name, const node_t *v, fn_def_t *fn,
		     bool (*get)(ctx_t *, const node_t *, fn_def_t *))
{
	if (v == NULL)
		return true;
	size_t old = path_key(c, name);
	bool ok = get(c, v, fn);
	path_pop(c, old);
	return ok;
}

static bool get_function(ctx_t *c, const node_t *n, fn_def_t *fn)
{
	fn->timeout_ms = 30000;
	fn->min_workers = 0;
	fn->max_workers = 4;
	fn->idle_ms = 60000;
	const node_t *v[F_COUNT];
	if (!get_fields(c, n, function_fields, v))
		return false;
	if (!field_str(c, "run", v[F_RUN], S_TEXT, &fn->run) || !field_str(c, "http", v[F_HTTP], S_URL, &fn->http))
		return false;
	if (v[F_RUN] != NULL && v[F_HTTP] != NULL) {
		path_key(c, "http");
		return fail(c, v[F_HTTP], "cannot be used together with run (exactly one of run or http)");
	}
	if (v[F_RUN] == NULL && v[F_HTTP] == NULL)
		return fail(c, n, "missing run or http (exactly one is required)");
	if (v[F_TRIGGERS] == NULL)
		return fail(c, n, "missing field \"triggers\"");
	return fn_field(c, "env", v[F_ENV], fn, get_env) &&
	       field_i64(c, "timeout", v[F_TIMEOUT], V_DURATION, 1, 900000, &fn->timeout_ms) &&
	       fn_field(c, "scale", v[F_SCALE], fn, get_scale) &&
	       fn_field(c, "triggers", v[F_TRIGGERS], fn, get_triggers);
}

static bool get_functions(ctx_t *c, const node_t *n, app_t *app)
{
	int count;
	if (!get_entries(c, n, &count))
		return false;
	app->functions = xcalloc((size_t)count, sizeof *app->functions);
	app->nfunctions = count;
	for (int i = 0; i < count; i++) {
		const node_t *k = n->kids[2 * i];
		fn_def_t *fn = &app->functions[i];
		if (!valid_fn_name(k->str, k->len))
			return fail(c, k, "invalid function name \"%s\" (1 to %d of A-Z a-z 0-9 _ -)", k->str,
				    FN_NAME_LEN_MAX);
		fn->name = xstrdup(k->str);
		fn->line = k->line;
		size_t old = path_key(c, k->str);
		if (!get_function(c, n->kids[2 * i + 1], fn))
			return false;
		path_pop(c, old);
	}
	return true;
}

static const char *const stream_fields[] = { "partitions", "retention", "retention_bytes", NULL };

static bool get_streams(ctx_t *c, const node_t *n, app_t *app)
{
	int count;
	if (!get_entries(c, n, &count))
		return false;
	app->streams = xcalloc((size_t)count, sizeof *app->streams);
	app->nstreams = count;
	for (int i = 0; i < count; i++) {
		const node_t *k = n->kids[2 * i];
		app_stream_t *s = &app->streams[i];
		if (!valid_topic(k->str, k->len))
			return fail(c, k, "invalid topic name \"%s\" (1 to %d of A-Z a-z 0-9 . _ -)", k->str,
				    TOPIC_LEN_MAX);
		s->name = xstrdup(k->str);
		s->line = k->line;
		s->partitions = 1;
		s->retention_ms = -1;
		s->retention_bytes = -1;
		size_t old = path_key(c, k->str);
		const node_t *v[3];
		if (!get_fields(c, n->kids[2 * i + 1], stream_fields, v) ||
		    !field_int(c, "partitions", v[0], 1, 10000, &s->partitions) ||
		    !field_i64(c, "retention", v[1], V_DURATION, 1, INT64_MAX, &s->retention_ms) ||
		    !field_i64(c, "retention_bytes", v[2], V_SIZE, 1, INT64_MAX, &s->retention_bytes))
			return false;
		path_pop(c, old);
	}
	return true;
}

static const char *const app_fields[] = { "app", "streams", "functions", NULL };

static bool get_app(ctx_t *c, const node_t *root, app_t *app)
{
	if (root == NULL)
		return true; /* an empty file: no streams, no functions */
	const node_t *v[3];
	if (!get_fields(c, root, app_fields, v))
		return false;
	char *name = NULL;
	bool ok = field_str(c, "app", v[0], S_TEXT, &name);
	free(name);
	if (!ok)
		return false;
	size_t old = path_key(c, "streams");
	if (v[1] != NULL && !get_streams(c, v[1], app))
		return false;
	path_pop(c, old);
	old = path_key(c, "functions");
	if (v[2] != NULL && !get_functions(c, v[2], app))
		return false;
	path_pop(c, old);
	return true;
}

/* The directory commands run in: the file's, made absolute when it exists. */
static char *app_dir(const char *filename)
{
	if (filename == NULL)
		return xstrdup(".");
	char *copy = xstrdup(filename);
	const char *d = dirname(copy);
	char *real = realpath(d, NULL);
	char *out = real != NULL ? real : xstrdup(d);
	free(copy);
	return out;
}

app_t *app_parse(const char *text, size_t len, const char *filename, char *err, size_t errcap)
{
	ctx_t c = { .file = filename != NULL ? filename : "<memory>", .text = text != NULL ? text : "",
		    .len = text != NULL ? len : 0, .err = err, .errcap = errcap };
	if (errcap > 0)
		err[0] = '\0';
	if (len > FILE_BYTES_MAX) {
		snprintf(err, errcap, "%s: too large (%zu bytes, at most %d)", c.file, len, FILE_BYTES_MAX);
		return NULL;
	}
	node_t *root = NULL;
	if (!load_tree(&c, &root))
		return NULL;
	app_t *app = xcalloc(1, sizeof *app);
	app->path = xstrdup(c.file);
	app->dir = app_dir(filename);
	bool ok = get_app(&c, root, app);
	node_free(root);
	if (!ok) {
		app_free(app);
		return NULL;
	}
	return app;
}

app_t *app_load(const char *path, char *err, size_t errcap)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errcap, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	/* One byte more than the limit tells a file at the limit from a larger one. */
	char *buf = malloc((size_t)FILE_BYTES_MAX + 1);
	ASSERT(buf != NULL);
	size_t n = fread(buf, 1, (size_t)FILE_BYTES_MAX + 1, f);
	int rerr = ferror(f) ? errno : 0;
	fclose(f);
	app_t *app = NULL;
	if (rerr != 0)
		snprintf(err, errcap, "cannot read %s: %s", path, strerror(rerr));
	else if (n > FILE_BYTES_MAX)
		snprintf(err, errcap, "%s: too large (more than %d bytes)", path, FILE_BYTES_MAX);
	else
		app = app_parse(buf, n, path, err, errcap);
	free(buf);
	return app;
}

static void trigger_free(fn_trigger_t *t)
{
	free(t->stream);
	free(t->group);
	json_decref(t->filter_json);
	filter_free(t->filter);
	free(t->on_failure);
}

void app_free(app_t *app)
{
	if (app == NULL)
		return;
	for (int i = 0; i < app->nstreams; i++)
		free(app->streams[i].name);
	free(app->streams);
	for (int i = 0; i < app->nfunctions; i++) {
		fn_def_t *fn = &app->functions[i];
		free(fn->name);
		free(fn->run);
		free(fn->http);
		for (int j = 0; j < fn->nenv; j++)
			free(fn->env[j]);
		free(fn->env);
		for (int j = 0; j < fn->ntriggers; j++)
			trigger_free(&fn->triggers[j]);
		free(fn->triggers);
	}
	free(app->functions);
	free(app->path);
	free(app->dir);
	free(app);
}

const fn_def_t *app_function(const app_t *app, const char *name)
{
	for (int i = 0; i < app->nfunctions; i++)
		if (strcmp(app->functions[i].name, name) == 0)
			return &app->functions[i];
	return NULL;
}

const char *fn_ordering_name(fn_ordering_t o)
{
	return o == FN_ORDER_KEY ? "key" : o == FN_ORDER_PARTITION ? "partition" : "none";
}
