/*
 * filter.c -- EventBridge-style content filters: compile a JSON pattern into a tree, match events against it.
 *
 * Design: filter_compile walks the pattern once, validates every part and builds a tree of nodes (one per
 * pattern object) holding fields (a key plus either a nested node or a list of matchers) and $or
 * alternatives. Every string the tree needs is copied, so the pattern may be freed right after compiling.
 * filter_match walks the tree beside the event; it reads the event through jansson's lookups only and
 * keeps all state on the stack, so it cannot fail and does not allocate.
 *
 * Invariants:
 *   1. A compiled tree is valid: non-empty matcher lists and nested objects, wildcard pieces that add up
 *      to the decoded string, numeric ranges with lo < hi when both ends are set. Matching trusts this.
 *   2. Nesting (objects and $or levels) is at most DEPTH_MAX, matchers in all at most MATCHERS_MAX (each
 *      literal in an anything-but list counts as one), so matching work is bounded by pattern x event.
 *   3. Arrays in the event are flattened at most ARRAY_DEPTH_MAX levels deep; deeper elements are ignored.
 *
 * Ownership: a filter_t owns its whole tree; node_free releases any partial tree after a compile error.
 */
#include "runtime/filter.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compat.h"
#include "core/fl_assert.h"

#define DEPTH_MAX 32
#define MATCHERS_MAX 1000
#define ARRAY_DEPTH_MAX 32
#define PATH_CAP 256

typedef struct {
	char *p; /* NUL-terminated copy; len is authoritative (JSON strings may hold NUL) */
	size_t len;
} fstr_t;

enum lit_type { LIT_STRING, LIT_NUMBER, LIT_TRUE, LIT_FALSE, LIT_NULL };

typedef struct {
	enum lit_type type;
	bool is_int; /* LIT_NUMBER: i is exact */
	long long i;
	double d;
	fstr_t s;
} lit_t;

enum op {
	OP_LITERAL,
	OP_PREFIX,
	OP_SUFFIX,
	OP_EQ_IC,
	OP_WILDCARD,
	OP_NUMERIC,
	OP_EXISTS,
	OP_ANYBUT, /* anything-but a list of literals */
};

typedef struct {
	enum op op;
	bool neg; /* anything-but around a string operator: matches strings the operator rejects */
	union {
		lit_t lit;
		struct {
			fstr_t s;     /* prefix, suffix, equals-ignore-case, or the decoded wildcard */
			size_t *seg;  /* wildcard: lengths of the pieces between stars, nseg = stars + 1 */
			size_t nseg;
		} str;
		struct {
			double lo, hi;
			bool has_lo, has_hi, lo_incl, hi_incl;
		} num;
		bool exists;
		struct {
			lit_t *v;
			size_t n;
		} lits;
	} u;
} matcher_t;

typedef struct node node_t;

typedef struct {
	fstr_t key;
	node_t *sub;    /* nested pattern, or NULL for a leaf */
	matcher_t *m;   /* leaf: any of these may match */
	size_t nm;
} field_t;

struct node {
	field_t *f;
	size_t nf;
	node_t **alt; /* $or: any of these must match as well */
	size_t nalt;
};

struct filter {
	node_t root;
};

/* ---- freeing ---------------------------------------------------------------------------------------- */

static void lit_free(lit_t *l)
{
	if (l->type == LIT_STRING)
		free(l->s.p);
}

static void matcher_free(matcher_t *m)
{
	switch (m->op) {
	case OP_LITERAL:
		lit_free(&m->u.lit);
		break;
	case OP_PREFIX:
	case OP_SUFFIX:
	case OP_EQ_IC:
	case OP_WILDCARD:
		free(m->u.str.s.p);
		free(m->u.str.seg);
		break;
	case OP_ANYBUT:
		for (size_t i = 0; i < m->u.lits.n; i++)
			lit_free(&m->u.lits.v[i]);
		free(m->u.lits.v);
		break;
	case OP_NUMERIC:
	case OP_EXISTS:
		break;
	}
}

static void node_free(node_t *n)
{
	for (size_t i = 0; i < n->nf; i++) {
		field_t *f = &n->f[i];
		free(f->key.p);
		if (f->sub) {
			node_free(f->sub);
			free(f->sub);
		}
		for (size_t j = 0; j < f->nm; j++)
			matcher_free(&f->m[j]);
		free(f->m);
	}
	free(n->f);
	for (size_t i = 0; i < n->nalt; i++) {
		if (n->alt[i]) /* NULL when compiling it failed before it was allocated */
			node_free(n->alt[i]);
		free(n->alt[i]);
	}
	free(n->alt);
}

void filter_free(filter_t *f)
{
	if (!f)
		return;
	node_free(&f->root);
	free(f);
}

/* ---- compiling -------------------------------------------------------------------------------------- */

typedef struct {
	char path[PATH_CAP]; /* where we are in the pattern, e.g. "data.price[0].numeric" */
	size_t plen;
	char *err;
	size_t errcap;
	size_t nmatchers;
} cctx_t;

/* jansson's iterators take a non-const object; they do not modify it. */
static json_t *unconst(const json_t *j)
{
	return (json_t *)(uintptr_t)j;
}

__attribute__((format(printf, 2, 3))) static bool fail(cctx_t *c, const char *fmt, ...)
{
	if (!c->err || c->errcap == 0)
		return false;
	int n = snprintf(c->err, c->errcap, "%s: ", c->plen ? c->path : "pattern");
	if (n < 0 || (size_t)n >= c->errcap)
		return false;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errcap - (size_t)n, fmt, ap);
	va_end(ap);
	return false;
}

/* Appends to the path (truncating when full); returns the length to restore with path_pop. */
static size_t path_push(cctx_t *c, const char *sep, const char *s, size_t len)
{
	size_t mark = c->plen;
	size_t room = PATH_CAP - 1 - c->plen;
	size_t seplen = c->plen ? strlen(sep) : 0;
	if (seplen > room)
		seplen = room;
	memcpy(c->path + c->plen, sep, seplen);
	c->plen += seplen;
	room -= seplen;
	if (len > room)
		len = room;
	memcpy(c->path + c->plen, s, len);
	c->plen += len;
	c->path[c->plen] = '\0';
	return mark;
}

static size_t path_push_index(cctx_t *c, size_t i)
{
	char b[32];
	int n = snprintf(b, sizeof b, "[%zu]", i);
	size_t mark = c->plen;
	size_t len = (size_t)n;
	if (len > PATH_CAP - 1 - c->plen)
		len = PATH_CAP - 1 - c->plen;
	memcpy(c->path + c->plen, b, len);
	c->plen += len;
	c->path[c->plen] = '\0';
	return mark;
}

static void path_pop(cctx_t *c, size_t mark)
{
	c->plen = mark;
	c->path[mark] = '\0';
}

static bool str_copy(cctx_t *c, fstr_t *out, const char *s, size_t len)
{
	out->p = malloc(len + 1);
	if (!out->p)
		return fail(c, "out of memory");
	memcpy(out->p, s, len);
	out->p[len] = '\0';
	out->len = len;
	return true;
}

static bool count_matcher(cctx_t *c)
{
	if (++c->nmatchers > MATCHERS_MAX)
		return fail(c, "more than %d matchers", MATCHERS_MAX);
	return true;
}

static bool is_scalar(const json_t *v)
{
	return json_is_string(v) || json_is_number(v) || json_is_boolean(v) || json_is_null(v);
}

/* A literal from a scalar json value (the caller checked is_scalar). */
static bool lit_compile(cctx_t *c, const json_t *v, lit_t *out)
{
	memset(out, 0, sizeof *out);
	if (json_is_string(v)) {
		out->type = LIT_STRING;
		return str_copy(c, &out->s, json_string_value(v), json_string_length(v));
	}
	if (json_is_integer(v)) {
		out->type = LIT_NUMBER;
		out->is_int = true;
		out->i = json_integer_value(v);
		out->d = (double)out->i;
	} else if (json_is_real(v)) {
		out->type = LIT_NUMBER;
		out->d = json_real_value(v);
	} else if (json_is_true(v)) {
		out->type = LIT_TRUE;
	} else if (json_is_false(v)) {
		out->type = LIT_FALSE;
	} else {
		out->type = LIT_NULL;
	}
	return true;
}

/*
 * Decodes a wildcard: '*' matches any run of bytes, "\*" is a literal star and "\\" a literal backslash.
 * The decoded bytes (stars removed) go to m->u.str.s, the lengths of the pieces between stars to seg.
 */
static bool wildcard_compile(cctx_t *c, const char *s, size_t len, matcher_t *m)
{
	char *dec = malloc(len + 1);
	size_t *seg = calloc(len + 1, sizeof *seg); /* at most len stars, so len + 1 pieces */
	if (!dec || !seg) {
		free(dec);
		free(seg);
		return fail(c, "out of memory");
	}
	size_t dlen = 0, nseg = 0, piece = 0;
	bool prev_star = false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '*') {
			if (prev_star) {
				free(dec);
				free(seg);
				return fail(c, "consecutive '*' are not allowed");
			}
			seg[nseg++] = piece;
			piece = 0;
			prev_star = true;
			continue;
		}
		prev_star = false;
		char ch = s[i];
		if (ch == '\\') {
			if (i + 1 == len || (s[i + 1] != '*' && s[i + 1] != '\\')) {
				free(dec);
				free(seg);
				return fail(c, "only \\* and \\\\ may be escaped");
			}
			ch = s[++i];
		}
		dec[dlen++] = ch;
		piece++;
	}
	seg[nseg++] = piece;
	dec[dlen] = '\0';
	ASSERT(nseg <= len + 1 && dlen + nseg - 1 <= len);
	m->u.str.s.p = dec;
	m->u.str.s.len = dlen;
	m->u.str.seg = seg;
	m->u.str.nseg = nseg;
	return true;
}

/* {"prefix"|"suffix"|"equals-ignore-case"|"wildcard": "s"}; the path already names the operator. */
static bool string_op_compile(cctx_t *c, enum op op, const json_t *arg, matcher_t *m)
{
	if (!json_is_string(arg))
		return fail(c, "expected a string");
	m->op = op;
	if (op == OP_WILDCARD)
		return wildcard_compile(c, json_string_value(arg), json_string_length(arg), m);
	return str_copy(c, &m->u.str.s, json_string_value(arg), json_string_length(arg));
}

static bool string_op_lookup(const char *name, enum op *op)
{
	if (strcmp(name, "prefix") == 0)
		*op = OP_PREFIX;
	else if (strcmp(name, "suffix") == 0)
		*op = OP_SUFFIX;
	else if (strcmp(name, "equals-ignore-case") == 0)
		*op = OP_EQ_IC;
	else if (strcmp(name, "wildcard") == 0)
		*op = OP_WILDCARD;
	else
		return false;
	return true;
}

/* Comparison operators: 0 "=", 1 "<", 2 "<=", 3 ">", 4 ">="; -1 if none. */
static int cmp_lookup(const json_t *v)
{
	static const char *const names[] = { "=", "<", "<=", ">", ">=" };
	if (!json_is_string(v))
		return -1;
	for (int i = 0; i < 5; i++)
		if (strcmp(json_string_value(v), names[i]) == 0)
			return i;
	return -1;
}

/* {"numeric": [op, n]} or {"numeric": [">"|">=", lo, "<"|"<=", hi]} with lo < hi. */
static bool numeric_compile(cctx_t *c, const json_t *arg, matcher_t *m)
{
	size_t n = json_array_size(arg);
	if (!json_is_array(arg) || (n != 2 && n != 4))
		return fail(c, "expected [op, number] or [op, number, op, number]");
	int ops[2];
	double vals[2];
	for (size_t i = 0; i < n; i += 2) {
		const json_t *o = json_array_get(arg, i), *v = json_array_get(arg, i + 1);
		ops[i / 2] = cmp_lookup(o);
		if (ops[i / 2] < 0) {
			path_push_index(c, i);
			if (json_is_string(o))
				return fail(c, "unknown comparison \"%s\"", json_string_value(o));
			return fail(c, "expected a comparison operator");
		}
		if (!json_is_number(v)) {
			path_push_index(c, i + 1);
			return fail(c, "expected a number");
		}
		vals[i / 2] = json_number_value(v);
	}
	m->op = OP_NUMERIC;
	for (size_t i = 0; i < n / 2; i++) {
		int o = ops[i];
		double x = vals[i];
		if (o == 0 || o == 3 || o == 4) {
			m->u.num.has_lo = true;
			m->u.num.lo = x;
			m->u.num.lo_incl = o != 3;
		}
		if (o == 0 || o == 1 || o == 2) {
			m->u.num.has_hi = true;
			m->u.num.hi = x;
			m->u.num.hi_incl = o != 1;
		}
	}
	if (n == 4) {
		if (ops[0] < 3 || ops[1] == 0 || ops[1] > 2)
			return fail(c, "a range is a lower bound (> or >=) then an upper bound (< or <=)");
		if (!(vals[0] < vals[1]))
			return fail(c, "the lower bound must be below the upper bound");
	}
	return true;
}

/* The only key of a one-key object. */
static const char *only_key(const json_t *obj, size_t *klen, const json_t **val)
{
	void *it = json_object_iter(unconst(obj));
	*klen = json_object_iter_key_len(it);
	*val = json_object_iter_value(it);
	return json_object_iter_key(it);
}

/* {"anything-but": literal | [literals] | {string operator: "s"}}; the path names "anything-but". */
static bool anything_but_compile(cctx_t *c, const json_t *arg, matcher_t *m)
{
	if (json_is_object(arg)) {
		if (json_object_size(arg) != 1)
			return fail(c, "expected exactly one operator");
		size_t klen;
		const json_t *v;
		const char *k = only_key(arg, &klen, &v);
		enum op op = OP_PREFIX;
		if (strlen(k) != klen || !string_op_lookup(k, &op))
			return fail(c, "unknown operator \"%s\"", k);
		path_push(c, ".", k, klen);
		if (!string_op_compile(c, op, v, m))
			return false;
		m->neg = true;
		return true;
	}
	m->op = OP_ANYBUT;
	if (is_scalar(arg)) {
		m->u.lits.v = calloc(1, sizeof *m->u.lits.v);
		if (!m->u.lits.v)
			return fail(c, "out of memory");
		m->u.lits.n = 1;
		return lit_compile(c, arg, &m->u.lits.v[0]);
	}
	if (!json_is_array(arg))
		return fail(c, "expected a literal, an array of literals or an operator object");
	size_t n = json_array_size(arg);
	if (n == 0)
		return fail(c, "empty array");
	m->u.lits.v = calloc(n, sizeof *m->u.lits.v);
	if (!m->u.lits.v)
		return fail(c, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_array_get(arg, i);
		size_t mark = path_push_index(c, i);
		if (i > 0 && !count_matcher(c))
			return false;
		if (!is_scalar(v))
			return fail(c, "expected a literal");
		m->u.lits.n = i + 1; /* lit_compile zeroes the slot first, so a failure frees cleanly */
		if (!lit_compile(c, v, &m->u.lits.v[i]))
			return false;
		path_pop(c, mark);
	}
	return true;
}

/* One element of a leaf array: a literal or an operator object. The path ends in "[i]". */
static bool matcher_compile(cctx_t *c, const json_t *v, matcher_t *m)
{
	if (!count_matcher(c))
		return false;
	if (is_scalar(v)) {
		m->op = OP_LITERAL;
		return lit_compile(c, v, &m->u.lit);
	}
	if (!json_is_object(v))
		return fail(c, "expected a literal or an operator object");
	if (json_object_size(v) != 1)
		return fail(c, "expected exactly one operator");
	size_t klen;
	const json_t *arg;
	const char *k = only_key(v, &klen, &arg);
	enum op op = OP_PREFIX;
	int kind;
	if (strlen(k) != klen)
		kind = -1;
	else if (string_op_lookup(k, &op))
		kind = 0;
	else if (strcmp(k, "numeric") == 0)
		kind = 1;
	else if (strcmp(k, "exists") == 0)
		kind = 2;
	else if (strcmp(k, "anything-but") == 0)
		kind = 3;
	else
		kind = -1;
	if (kind < 0)
		return fail(c, "unknown operator \"%s\"", k);
	m->op = OP_EXISTS; /* owns nothing until an operator below takes memory */
	size_t mark = path_push(c, ".", k, klen);
	switch (kind) {
	case 0:
		if (!string_op_compile(c, op, arg, m))
			return false;
		break;
	case 1:
		if (!numeric_compile(c, arg, m))
			return false;
		break;
	case 2:
		if (!json_is_boolean(arg))
			return fail(c, "expected true or false");
		m->u.exists = json_is_true(arg);
		break;
	default:
		if (!anything_but_compile(c, arg, m))
			return false;
		break;
	}
	path_pop(c, mark);
	return true;
}

static bool leaf_compile(cctx_t *c, const json_t *arr, field_t *f)
{
	size_t n = json_array_size(arr);
	if (n == 0)
		return fail(c, "empty array");
	f->m = calloc(n, sizeof *f->m);
	if (!f->m)
		return fail(c, "out of memory");
	for (size_t i = 0; i < n; i++) {
		size_t mark = path_push_index(c, i);
		f->nm = i + 1; /* the slot is zeroed (OP_LITERAL of LIT_STRING with p == NULL frees cleanly) */
		if (!matcher_compile(c, json_array_get(arr, i), &f->m[i]))
			return false;
		path_pop(c, mark);
	}
	return true;
}

static bool object_compile(cctx_t *c, const json_t *obj, node_t *n, int depth);

/* A nested pattern object (a field's value or a $or alternative) one level below `depth`. */
static bool sub_compile(cctx_t *c, const json_t *obj, node_t **out, int depth)
{
	if (depth + 1 > DEPTH_MAX)
		return fail(c, "nested deeper than %d levels", DEPTH_MAX);
	if (json_object_size(obj) == 0)
		return fail(c, "empty object");
	*out = calloc(1, sizeof **out);
	if (!*out)
		return fail(c, "out of memory");
	return object_compile(c, obj, *out, depth + 1);
}

static bool or_compile(cctx_t *c, const json_t *arr, node_t *n, int depth)
{
	if (!json_is_array(arr))
		return fail(c, "expected an array of patterns");
	size_t cnt = json_array_size(arr);
	if (cnt == 0)
		return fail(c, "empty array");
	n->alt = calloc(cnt, sizeof *n->alt);
	if (!n->alt)
		return fail(c, "out of memory");
	for (size_t i = 0; i < cnt; i++) {
		const json_t *v = json_array_get(arr, i);
		size_t mark = path_push_index(c, i);
		if (!json_is_object(v))
			return fail(c, "expected an object");
		n->nalt = i + 1;
		if (!sub_compile(c, v, &n->alt[i], depth))
			return false;
		path_pop(c, mark);
	}
	return true;
}

static bool object_compile(cctx_t *c, const json_t *obj, node_t *n, int depth)
{
	n->f = calloc(json_object_size(obj) + 1, sizeof *n->f);
	if (!n->f)
		return fail(c, "out of memory");
	const char *k;
	size_t klen;
	const json_t *v;
	json_object_keylen_foreach(unconst(obj), k, klen, v) {
		size_t mark = klen ? path_push(c, ".", k, klen) : path_push(c, ".", "\"\"", 2);
		if (klen == 3 && memcmp(k, "$or", 3) == 0) {
			if (!or_compile(c, v, n, depth))
				return false;
			path_pop(c, mark);
			continue;
		}
		field_t *f = &n->f[n->nf++];
		if (!str_copy(c, &f->key, k, klen))
			return false;
		if (json_is_object(v)) {
			if (!sub_compile(c, v, &f->sub, depth))
				return false;
		} else if (json_is_array(v)) {
			if (!leaf_compile(c, v, f))
				return false;
		} else {
			return fail(c, "expected an array of matchers or an object");
		}
		path_pop(c, mark);
	}
	return true;
}

filter_t *filter_compile(const json_t *pattern, char *err, size_t errcap)
{
	cctx_t c;
	c.path[0] = '\0';
	c.plen = 0;
	c.err = err;
	c.errcap = errcap;
	c.nmatchers = 0;
	if (err && errcap)
		err[0] = '\0';
	if (!json_is_object(pattern)) {
		fail(&c, "expected an object");
		return NULL;
	}
	filter_t *f = calloc(1, sizeof *f);
	if (!f) {
		fail(&c, "out of memory");
		return NULL;
	}
	if (!object_compile(&c, pattern, &f->root, 0)) {
		filter_free(f);
		return NULL;
	}
	return f;
}

/* ---- matching --------------------------------------------------------------------------------------- */

static bool lit_eq(const lit_t *l, const json_t *v)
{
	switch (l->type) {
	case LIT_STRING:
		return json_is_string(v) && json_string_length(v) == l->s.len &&
		       memcmp(json_string_value(v), l->s.p, l->s.len) == 0;
	case LIT_NUMBER:
		if (l->is_int && json_is_integer(v))
			return json_integer_value(v) == l->i;
		return json_is_number(v) && json_number_value(v) == l->d;
	case LIT_TRUE:
		return json_is_true(v);
	case LIT_FALSE:
		return json_is_false(v);
	case LIT_NULL:
		return json_is_null(v);
	}
	return false;
}

static unsigned char fold(unsigned char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch - 'A' + 'a') : ch;
}

/* Finds needle in hay[from..hay_len); returns its offset or SIZE_MAX. */
static size_t find(const char *hay, size_t hay_len, size_t from, const char *needle, size_t n)
{
	if (n == 0)
		return from;
	if (hay_len - from < n)
		return SIZE_MAX;
	const char *p = memmem(hay + from, hay_len - from, needle, n);
	return p ? (size_t)(p - hay) : SIZE_MAX;
}

/*
 * Glob with '*' only. The first piece is anchored at the start, the last at the end, and the pieces in
 * between are placed leftmost-first: taking the earliest occurrence never rules out a later piece.
 */
static bool wildcard_match(const matcher_t *m, const char *s, size_t len)
{
	const char *pat = m->u.str.s.p;
	const size_t *seg = m->u.str.seg;
	size_t nseg = m->u.str.nseg;
	DASSERT(nseg >= 1);
	if (nseg == 1)
		return len == seg[0] && memcmp(s, pat, len) == 0;
	size_t first = seg[0], last = seg[nseg - 1];
	if (len < first + last || memcmp(s, pat, first) != 0 ||
	    memcmp(s + len - last, pat + m->u.str.s.len - last, last) != 0)
		return false;
	size_t pos = first, end = len - last, poff = first;
	for (size_t i = 1; i + 1 < nseg; i++) {
		size_t at = find(s, end, pos, pat + poff, seg[i]);
		if (at == SIZE_MAX)
			return false;
		pos = at + seg[i];
		poff += seg[i];
	}
	return true;
}

static bool string_op_match(const matcher_t *m, const char *s, size_t len)
{
	const fstr_t *p = &m->u.str.s;
	switch (m->op) {
	case OP_PREFIX:
		return len >= p->len && memcmp(s, p->p, p->len) == 0;
	case OP_SUFFIX:
		return len >= p->len && memcmp(s + len - p->len, p->p, p->len) == 0;
	case OP_EQ_IC:
		if (len != p->len)
			return false;
		for (size_t i = 0; i < len; i++)
			if (fold((unsigned char)s[i]) != fold((unsigned char)p->p[i]))
				return false;
		return true;
	case OP_WILDCARD:
		return wildcard_match(m, s, len);
	default:
		return false;
	}
}

/* One matcher against one scalar value of the event (never an array or object). */
static bool scalar_match(const matcher_t *m, const json_t *v)
{
	switch (m->op) {
	case OP_LITERAL:
		return lit_eq(&m->u.lit, v);
	case OP_PREFIX:
	case OP_SUFFIX:
	case OP_EQ_IC:
	case OP_WILDCARD:
		if (!json_is_string(v))
			return false;
		return string_op_match(m, json_string_value(v), json_string_length(v)) != m->neg;
	case OP_NUMERIC: {
		if (!json_is_number(v))
			return false;
		double x = json_number_value(v);
		if (m->u.num.has_lo && (m->u.num.lo_incl ? x < m->u.num.lo : x <= m->u.num.lo))
			return false;
		if (m->u.num.has_hi && (m->u.num.hi_incl ? x > m->u.num.hi : x >= m->u.num.hi))
			return false;
		return true;
	}
	case OP_ANYBUT:
		for (size_t i = 0; i < m->u.lits.n; i++)
			if (lit_eq(&m->u.lits.v[i], v))
				return false;
		return true;
	case OP_EXISTS:
		break;
	}
	return false;
}

/* True when any scalar in v (v itself, or the elements of v flattened) satisfies m; m NULL: any scalar. */
static bool any_scalar(const matcher_t *m, const json_t *v, int adepth)
{
	if (json_is_array(v)) {
		if (adepth >= ARRAY_DEPTH_MAX)
			return false;
		size_t i;
		const json_t *e;
		json_array_foreach(v, i, e)
			if (any_scalar(m, e, adepth + 1))
				return true;
		return false;
	}
	if (v == NULL || json_is_object(v))
		return false;
	return m == NULL || scalar_match(m, v);
}

static bool leaf_match(const field_t *f, const json_t *v)
{
	for (size_t i = 0; i < f->nm; i++) {
		const matcher_t *m = &f->m[i];
		if (m->op == OP_EXISTS ? any_scalar(NULL, v, 0) == m->u.exists : any_scalar(m, v, 0))
			return true;
	}
	return false;
}

static bool object_match(const node_t *n, const json_t *obj);

/* 1: an object element of arr (flattened) matches; 0: there were objects, none matched; -1: no objects. */
static int array_match(const node_t *n, const json_t *arr, int adepth)
{
	int r = -1;
	size_t i;
	const json_t *e;
	if (adepth >= ARRAY_DEPTH_MAX)
		return r;
	json_array_foreach(arr, i, e) {
		int x = -1;
		if (json_is_object(e))
			x = object_match(n, e) ? 1 : 0;
		else if (json_is_array(e))
			x = array_match(n, e, adepth + 1);
		if (x == 1)
			return 1;
		if (x == 0)
			r = 0;
	}
	return r;
}

/*
 * A nested pattern against the event's value v. An array of objects matches when one element matches the
 * whole sub-pattern (so keys matched together come from the same element). A value with no object in it
 * (missing, scalar, array of scalars) is matched as an empty object, where only exists:false can match.
 */
static bool nested_match(const node_t *n, const json_t *v)
{
	if (json_is_object(v))
		return object_match(n, v);
	if (json_is_array(v)) {
		int r = array_match(n, v, 0);
		if (r >= 0)
			return r == 1;
	}
	return object_match(n, NULL);
}

static bool object_match(const node_t *n, const json_t *obj)
{
	for (size_t i = 0; i < n->nf; i++) {
		const field_t *f = &n->f[i];
		const json_t *v = obj ? json_object_getn(obj, f->key.p, f->key.len) : NULL;
		if (f->sub ? !nested_match(f->sub, v) : !leaf_match(f, v))
			return false;
	}
	if (n->nalt == 0)
		return true;
	for (size_t i = 0; i < n->nalt; i++)
		if (object_match(n->alt[i], obj))
			return true;
	return false;
}

bool filter_match(const filter_t *f, const json_t *event)
{
	if (!f)
		return true;
	return object_match(&f->root, json_is_object(event) ? event : NULL);
}
