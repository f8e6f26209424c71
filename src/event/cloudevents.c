/* cloudevents.c -- CloudEvents <-> Kafka records. See cloudevents.h. */
#include "event/cloudevents.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/compat.h"
#include "core/fl_assert.h"

const char *ce_get(const ce_event_t *ev, const char *name)
{
	for (int i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, name) == 0)
			return ev->attrs[i].value;
	return NULL;
}

/* The attribute strings of an event: bump-allocated in blocks (one malloc per ~1 KiB instead of two per
 * attribute), all freed by ce_event_free. */
struct ce_arena {
	struct ce_arena *next;
	size_t used, cap;
	char mem[];
};

static char *arena_dup(ce_event_t *ev, const char *s)
{
	size_t n = strlen(s) + 1;
	struct ce_arena *a = ev->arena;
	if (a == NULL || a->cap - a->used < n) {
		size_t cap = n > 1024 ? n : 1024;
		struct ce_arena *b = malloc(sizeof *b + cap);
		ASSERT(b != NULL);
		b->next = a;
		b->used = 0;
		b->cap = cap;
		ev->arena = a = b;
	}
	char *d = a->mem + a->used;
	memcpy(d, s, n);
	a->used += n;
	return d;
}

bool ce_set(ce_event_t *ev, const char *name, const char *value)
{
	for (int i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, name) == 0) {
			ev->attrs[i].value = arena_dup(ev, value);
			return true;
		}
	if (ev->nattrs == CE_ATTRS_MAX)
		return false;
	ev->attrs[ev->nattrs].name = arena_dup(ev, name);
	ev->attrs[ev->nattrs].value = arena_dup(ev, value);
	ev->nattrs++;
	return true;
}

void ce_event_free(ce_event_t *ev)
{
	while (ev->arena != NULL) {
		struct ce_arena *a = ev->arena;
		ev->arena = a->next;
		free(a);
	}
	ev->nattrs = 0;
	buf_free(&ev->data);
	ev->has_data = false;
}

static bool valid_name(const char *n)
{
	size_t len = strlen(n);
	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9')))
			return false;
	return true;
}

static int b64_val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

static bool b64_decode(const char *s, buf_t *out)
{
	uint32_t acc = 0;
	int bits = 0;
	for (; *s; s++) {
		if (*s == '=' || *s == '\n' || *s == '\r')
			continue;
		int v = b64_val(*s);
		if (v < 0)
			return false;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf_put_u8(out, (uint8_t)(acc >> bits));
		}
	}
	return true;
}

static void b64_encode(const uint8_t *p, size_t n, buf_t *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
		char q[4] = { tbl[v >> 18 & 63], tbl[v >> 12 & 63], i + 1 < n ? tbl[v >> 6 & 63] : '=',
			      i + 2 < n ? tbl[v & 63] : '=' };
		buf_append(out, q, 4);
	}
}

const char *ce_from_json(json_t *obj, ce_event_t *ev)
{
	if (!json_is_object(obj))
		return "an event must be a JSON object";
	if (json_object_get(obj, "data") != NULL && json_object_get(obj, "data_base64") != NULL)
		return "an event has data or data_base64, not both";
	const char *key;
	json_t *val;
	json_object_foreach(obj, key, val) {
		if (strcmp(key, "data") == 0) {
			ev->has_data = true;
			if (json_is_string(val)) {
				buf_append(&ev->data, json_string_value(val), json_string_length(val));
			} else {
				char *s = json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
				if (s == NULL)
					return "data cannot be encoded";
				buf_append(&ev->data, s, strlen(s));
				free(s);
				/* JSON data in the JSON format is JSON unless the event says otherwise. */
				if (json_object_get(obj, "datacontenttype") == NULL)
					ce_set(ev, "datacontenttype", "application/json");
			}
			continue;
		}
		if (strcmp(key, "data_base64") == 0) {
			if (!json_is_string(val) || !b64_decode(json_string_value(val), &ev->data))
				return "data_base64 must be a base64 string";
			ev->has_data = true;
			continue;
		}
		if (!valid_name(key))
			return "attribute names are 1-20 characters of [a-z0-9]";
		char num[32];
		const char *s = NULL;
		if (json_is_string(val))
			s = json_string_value(val);
		else if (json_is_integer(val))
			snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(val)), s = num;
		else if (json_is_boolean(val))
			s = json_is_true(val) ? "true" : "false";
		else if (json_is_null(val))
			continue;
		else
			return "attribute values must be strings, integers or booleans";
		if (!ce_set(ev, key, s))
			return "too many attributes";
	}
	return NULL;
}

const char *ce_validate(const ce_event_t *ev)
{
	static const char *const required[] = { "id", "source", "type", "specversion" };
	static const char *const missing[] = { "missing required attribute 'id'",
					       "missing required attribute 'source'",
					       "missing required attribute 'type'",
					       "missing required attribute 'specversion'" };
	for (int i = 0; i < 4; i++) {
		const char *v = ce_get(ev, required[i]);
		if (v == NULL || v[0] == 0)
			return missing[i];
	}
	if (strcmp(ce_get(ev, "specversion"), "1.0") != 0)
		return "specversion must be \"1.0\"";
	for (int i = 0; i < ev->nattrs; i++)
		if (!valid_name(ev->attrs[i].name))
			return "attribute names are 1-20 characters of [a-z0-9]";
	return NULL;
}

int ce_to_record(const ce_event_t *ev, slice_t *key, slice_t *value, ce_kv_t *headers, char (*names)[32],
		 int cap)
{
	const char *pk = ce_get(ev, "partitionkey");
	*key = pk ? slice_cstr(pk) : slice_make(NULL, 0);
	*value = ev->has_data ? slice_make(ev->data.data ? ev->data.data : (const uint8_t *)"", ev->data.len)
			      : slice_make(NULL, 0);
	int n = 0;
	for (int i = 0; i < ev->nattrs && n < cap; i++) {
		const ce_attr_t *a = &ev->attrs[i];
		if (strcmp(a->name, "partitionkey") == 0)
			continue;
		if (strcmp(a->name, "datacontenttype") == 0)
			snprintf(names[n], sizeof names[n], "content-type");
		else
			snprintf(names[n], sizeof names[n], "ce_%s", a->name);
		headers[n].key = slice_cstr(names[n]);
		headers[n].value = slice_cstr(a->value);
		headers[n].value_null = false;
		n++;
	}
	return n;
}

/* ---- records as JSON text, without building a document (the functions runtime's hot path) --------------- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one (overlongs, surrogates and code
 * points above U+10FFFF are not). */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	if (c < 0x80)
		return 1;
	size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
	if (len == 0 || len > n || c > 0xf4)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
	    (c == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

/* Eight bytes at once: true when none is a control character, '"', '\\' or non-ASCII (so all are plain). */
static inline bool plain8(const uint8_t *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
	uint64_t special = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | x;
	return (special & high) == 0;
}

/* Appends s as a JSON string; invalid UTF-8 bytes become U+FFFD. Returns false when any byte was not valid
 * UTF-8 text (so a caller can choose base64 instead). */
static bool put_str(buf_t *b, const uint8_t *s, size_t n)
{
	bool clean = true;
	buf_append(b, "\"", 1);
	size_t run = 0; /* bytes copied as they are, flushed before each escape */
	for (size_t i = 0; i < n;) {
		if (n - i >= 8 && plain8(s + i)) { /* eight plain ASCII bytes at once */
			i += 8;
			run += 8;
			continue;
		}
		uint8_t c = s[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { /* one plain ASCII byte */
			i++;
			run++;
			continue;
		}
		size_t k = utf8_seq(s + i, n - i);
		if (k > 0 && c >= 0x20 && c != '"' && c != '\\') {
			i += k;
			run += k;
			continue;
		}
		buf_append(b, s + i - run, run);
		run = 0;
		char esc[8];
		if (k == 0) {
			buf_append(b, "\xef\xbf\xbd", 3);
			clean = false;
		} else if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			buf_append(b, esc, 2);
		} else {
			if (c == 0)
				clean = false;
			snprintf(esc, sizeof esc, "\\u%04x", c);
			buf_append(b, esc, 6);
		}
		i += k ? k : 1;
	}
	if (run > 0) /* (s may be NULL when n is 0) */
		buf_append(b, s + n - run, run);
	buf_append(b, "\"", 1);
	return clean;
}

/* A JSON syntax check without allocation (RFC 8259; nesting up to 128). */
typedef struct {
	const uint8_t *p, *end;
	int depth;
} jv_t;

static void jv_ws(jv_t *v)
{
	while (v->p < v->end && (*v->p == ' ' || *v->p == '\t' || *v->p == '\n' || *v->p == '\r'))
		v->p++;
}

static bool jv_value(jv_t *v);

static bool jv_string(jv_t *v)
{
	if (v->p >= v->end || *v->p != '"')
		return false;
	v->p++;
	for (;;) {
		while (v->end - v->p >= 8 && plain8(v->p))
			v->p += 8;
		if (v->p >= v->end || *v->p == '"')
			break;
		if (*v->p == '\\') {
			v->p++;
			if (v->p >= v->end)
				return false;
			if (*v->p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (v->p + i >= v->end || !isxdigit(v->p[i]))
						return false;
				v->p += 4;
			} else if (!strchr("\"\\/bfnrt", *v->p) || *v->p == 0) {
				return false;
			}
			v->p++;
			continue;
		}
		if (*v->p >= 0x20 && *v->p < 0x80) { /* plain ASCII ('"' and '\\' were taken above) */
			v->p++;
			continue;
		}
		size_t k = utf8_seq(v->p, (size_t)(v->end - v->p));
		if (k == 0 || *v->p < 0x20)
			return false;
		v->p += k;
	}
	if (v->p >= v->end)
		return false;
	v->p++;
	return true;
}

static bool jv_number(jv_t *v)
{
	const uint8_t *s = v->p;
	if (v->p < v->end && *v->p == '-')
		v->p++;
	if (v->p >= v->end || !isdigit(*v->p))
		return false;
	if (*v->p == '0')
		v->p++;
	else
		while (v->p < v->end && isdigit(*v->p))
			v->p++;
	if (v->p < v->end && *v->p == '.') {
		v->p++;
		if (v->p >= v->end || !isdigit(*v->p))
			return false;
		while (v->p < v->end && isdigit(*v->p))
			v->p++;
	}
	if (v->p < v->end && (*v->p == 'e' || *v->p == 'E')) {
		v->p++;
		if (v->p < v->end && (*v->p == '+' || *v->p == '-'))
			v->p++;
		if (v->p >= v->end || !isdigit(*v->p))
			return false;
		while (v->p < v->end && isdigit(*v->p))
			v->p++;
	}
	/* also a number a double can hold (what jansson, and most handlers, will parse it into) */
	size_t n = (size_t)(v->p - s);
	if (n <= 300 && !memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n))
		return true; /* an integer of at most 300 digits: finite */
	char num[128];
	if (n >= sizeof num)
		return false;
	memcpy(num, s, n);
	num[n] = 0;
	return isfinite(strtod(num, NULL));
}

static bool jv_word(jv_t *v, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(v->end - v->p) < n || memcmp(v->p, w, n) != 0)
		return false;
	v->p += n;
	return true;
}

static bool jv_container(jv_t *v, char close)
{
	if (++v->depth > 128)
		return false;
	v->p++;
	jv_ws(v);
	if (v->p < v->end && *v->p == close) {
		v->p++;
		v->depth--;
		return true;
	}
	for (;;) {
		jv_ws(v);
		if (close == '}') {
			if (!jv_string(v))
				return false;
			jv_ws(v);
			if (v->p >= v->end || *v->p != ':')
				return false;
			v->p++;
			jv_ws(v);
		}
		if (!jv_value(v))
			return false;
		jv_ws(v);
		if (v->p < v->end && *v->p == ',') {
			v->p++;
			continue;
		}
		if (v->p < v->end && *v->p == close) {
			v->p++;
			v->depth--;
			return true;
		}
		return false;
	}
}

static bool jv_value(jv_t *v)
{
	if (v->p >= v->end)
		return false;
	switch (*v->p) {
	case '{': return jv_container(v, '}');
	case '[': return jv_container(v, ']');
	case '"': return jv_string(v);
	case 't': return jv_word(v, "true");
	case 'f': return jv_word(v, "false");
	case 'n': return jv_word(v, "null");
	default: return jv_number(v);
	}
}

static bool json_text_valid(slice_t s)
{
	jv_t v = { s.ptr, s.ptr + s.len, 0 };
	jv_ws(&v);
	if (!jv_value(&v))
		return false;
	jv_ws(&v);
	return v.p == v.end;
}

/* ---- structured and batch mode straight from the text (the HTTP gateway's hot path) ------------------- */

static int hexval(uint8_t c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void put_utf8(buf_t *b, uint32_t cp)
{
	uint8_t u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_append(b, u, n);
}

/* The string at *pp (already validated, opening quote included), unescaped and appended to out; *pp moves
 * past it. False for what jansson refuses too: \u0000 (when !allow_nul) and unpaired surrogates. */
static bool str_unescape(const uint8_t **pp, const uint8_t *end, buf_t *out, bool allow_nul)
{
	const uint8_t *p = *pp + 1;
	for (;;) {
		const uint8_t *run = p;
		while (end - p >= 8 && plain8(p))
			p += 8;
		while (*p != '"' && *p != '\\')
			p++;
		buf_append(out, run, (size_t)(p - run));
		if (*p == '"')
			break;
		p++; /* the backslash */
		uint8_t c = *p++;
		if (c != 'u') {
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			buf_put_u8(out, (uint8_t)to[strchr(from, c) - from]);
			continue;
		}
		uint32_t cp = (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
		p += 4;
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return false;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (p[0] != '\\' || p[1] != 'u')
				return false;
			uint32_t lo = (uint32_t)(hexval(p[2]) << 12 | hexval(p[3]) << 8 | hexval(p[4]) << 4 | hexval(p[5]));
			if (lo < 0xdc00 || lo > 0xdfff)
				return false;
			p += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		if (cp == 0 && !allow_nul)
			return false;
		put_utf8(out, cp);
	}
	*pp = p + 1;
	return true;
}

/* Appends the (validated) JSON value [s, e) without the whitespace between tokens. */
static void put_compact(buf_t *b, const uint8_t *s, const uint8_t *e)
{
	bool in_str = false;
	const uint8_t *run = s;
	for (const uint8_t *p = s; p < e; p++) {
		if (in_str) {
			if (*p == '\\')
				p++;
			else if (*p == '"')
				in_str = false;
		} else if (*p == '"') {
			in_str = true;
		} else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
			buf_append(b, run, (size_t)(p - run));
			run = p + 1;
		}
	}
	buf_append(b, run, (size_t)(e - run));
}

static void ce_unset(ce_event_t *ev, const char *name)
{
	for (int i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, name) == 0) {
			ev->attrs[i] = ev->attrs[--ev->nattrs];
			return;
		}
}

/* One event object at v->p (validated text). */
static const char *parse_object(jv_t *v, ce_event_t *ev, buf_t *tmp)
{
	if (*v->p != '{')
		return "an event must be a JSON object";
	v->p++;
	bool json_data = false, has_ct = false, seen_data = false, seen_b64 = false;
	for (;;) {
		jv_ws(v);
		if (*v->p == '}')
			break;
		tmp->len = 0;
		if (!str_unescape(&v->p, v->end, tmp, false))
			return "malformed JSON (a \\u escape)";
		buf_put_u8(tmp, 0);
		char key[32];
		bool key_ok = tmp->len <= sizeof key;
		if (key_ok)
			memcpy(key, tmp->data, tmp->len);
		jv_ws(v);
		v->p++; /* ':' */
		jv_ws(v);
		const uint8_t *vs = v->p;
		if (key_ok && strcmp(key, "data") == 0) {
			if (seen_b64)
				return "an event has data or data_base64, not both";
			seen_data = true;
			ev->has_data = true;
			ev->data.len = 0;
			if (*vs == '"') {
				if (!str_unescape(&v->p, v->end, &ev->data, true))
					return "malformed JSON (a \\u escape)";
				json_data = false;
			} else {
				jv_value(v);
				put_compact(&ev->data, vs, v->p);
				json_data = true;
			}
		} else if (key_ok && strcmp(key, "data_base64") == 0) {
			if (seen_data)
				return "an event has data or data_base64, not both";
			seen_b64 = true;
			if (*vs != '"')
				return "data_base64 must be a base64 string";
			tmp->len = 0;
			if (!str_unescape(&v->p, v->end, tmp, false))
				return "data_base64 must be a base64 string";
			buf_put_u8(tmp, 0);
			ev->data.len = 0;
			if (!b64_decode((const char *)tmp->data, &ev->data))
				return "data_base64 must be a base64 string";
			ev->has_data = true;
			json_data = false;
		} else {
			if (!key_ok || !valid_name(key))
				return "attribute names are 1-20 characters of [a-z0-9]";
			if (strcmp(key, "datacontenttype") == 0)
				has_ct = true;
			char num[32];
			const char *val = NULL;
			tmp->len = 0;
			if (*vs == '"') {
				if (!str_unescape(&v->p, v->end, tmp, false))
					return "attribute values must not hold \\u0000 or unpaired surrogates";
				buf_put_u8(tmp, 0);
				val = (const char *)tmp->data;
			} else if (*vs == 't' || *vs == 'f') {
				jv_value(v);
				val = *vs == 't' ? "true" : "false";
			} else if (*vs == 'n') {
				jv_value(v);
				ce_unset(ev, key);
				goto next;
			} else if (*vs == '{' || *vs == '[') {
				return "attribute values must be strings, integers or booleans";
			} else {
				jv_value(v);
				size_t n = (size_t)(v->p - vs);
				if (n >= sizeof num || memchr(vs, '.', n) || memchr(vs, 'e', n) || memchr(vs, 'E', n))
					return "attribute values must be strings, integers or booleans";
				memcpy(num, vs, n);
				num[n] = 0;
				errno = 0;
				long long x = strtoll(num, NULL, 10);
				if (errno == ERANGE)
					return "attribute values must be strings, integers or booleans";
				snprintf(num, sizeof num, "%lld", x);
				val = num;
			}
			if (!ce_set(ev, key, val))
				return "too many attributes";
		}
	next:
		jv_ws(v);
		if (*v->p == ',')
			v->p++;
	}
	v->p++; /* '}' */
	/* JSON data in the JSON format is JSON unless the event says otherwise (as ce_from_json). */
	if (json_data && !has_ct)
		ce_set(ev, "datacontenttype", "application/json");
	return NULL;
}

const char *ce_parse_text(const uint8_t *text, size_t len, bool batch, size_t max,
			  ce_event_t *(*new_event)(void *arg), void *arg)
{
	if (!json_text_valid(slice_make(text, len)))
		return "malformed JSON";
	/* Valid JSON from here on: the walk below needs no bounds checks (the text ends after the value). */
	jv_t v = { text, text + len, 0 };
	buf_t tmp = { 0 };
	const char *why = NULL;
	jv_ws(&v);
	if (!batch) {
		why = parse_object(&v, new_event(arg), &tmp);
	} else if (*v.p != '[') {
		why = "a batch must be a non-empty JSON array of events";
	} else {
		v.p++;
		jv_ws(&v);
		if (*v.p == ']')
			why = "a batch must be a non-empty JSON array of events";
		for (size_t n = 0; why == NULL && *v.p != ']'; n++) {
			if (n == max) {
				why = "too many events in one batch";
				break;
			}
			why = parse_object(&v, new_event(arg), &tmp);
			jv_ws(&v);
			if (why == NULL && *v.p == ',') {
				v.p++;
				jv_ws(&v);
			}
		}
	}
	buf_free(&tmp);
	return why;
}

/* Decimal digits of v into out (no terminator); returns the length. */
static int fmt_i64(char *out, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	int k = 0;
	if (v < 0)
		out[k++] = '-';
	while (n > 0)
		out[k++] = tmp[--n];
	return k;
}

/* Milliseconds since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 characters, no terminator). The date of
 * the last second seen is cached per thread: records come in time order. */
static void fmt_time(int64_t ms, char out[24])
{
	static __thread int64_t cached_sec = INT64_MIN;
	static __thread char cached[20];
	int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
	if (sec != cached_sec) {
		time_t t = (time_t)sec;
		struct tm tm;
		gmtime_r(&t, &tm);
		char buf[32];
		snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1,
			 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		memcpy(cached, buf, 20);
		cached_sec = sec;
	}
	memcpy(out, cached, 20);
	int m = (int)(ms - sec * 1000);
	out[20] = (char)('0' + m / 100);
	out[21] = (char)('0' + m / 10 % 10);
	out[22] = (char)('0' + m % 10);
	out[23] = 'Z';
}

static void put_attr(buf_t *b, bool *first, const char *name, const uint8_t *val, size_t n)
{
	if (!*first)
		buf_append(b, ",", 1);
	*first = false;
	put_str(b, (const uint8_t *)name, strlen(name));
	buf_append(b, ":", 1);
	put_str(b, val, n);
}

/* Copies a string literal (without its terminator); returns its length. */
#define put_lit(dst, lit) (memcpy((dst), (lit), sizeof(lit) - 1), sizeof(lit) - 1)

void ce_record_to_text(const ce_kafka_record_t *rec, bool with_topic, buf_t *b)
{
	bool is_ce = false, json_data = false, first = true;
	/* the runtime's hot path: the topic and the numbers are formatted once, without printf */
	size_t tl = strlen(rec->topic);
	bool plain_topic = tl <= 249 && topic_chars_legal(rec->topic, tl); /* a Kafka topic name: copied as is */
	if (tl > 249)
		tl = 249;
	char pnum[24], onum[24];
	size_t pl = (size_t)fmt_i64(pnum, rec->partition), ol = (size_t)fmt_i64(onum, rec->offset);
	buf_append(b, "{", 1);
	for (int i = 0; i < rec->nheaders; i++) {
		slice_t k = rec->headers[i].key, v = rec->headers[i].value;
		if (rec->headers[i].value_null)
			continue;
		char name[64];
		if (k.len > 3 && k.len < 40 && memcmp(k.ptr, "ce_", 3) == 0) {
			snprintf(name, sizeof name, "%.*s", (int)(k.len - 3), (const char *)k.ptr + 3);
			if (strcmp(name, "partition") == 0 || strcmp(name, "offset") == 0 || strcmp(name, "topic") == 0 ||
			    strcmp(name, "partitionkey") == 0 || strcmp(name, "data") == 0 ||
			    strcmp(name, "data_base64") == 0)
				continue; /* ours below; never two members of one name */
			is_ce = true;
		} else if (slice_eq(k, slice_cstr("content-type"))) {
			snprintf(name, sizeof name, "datacontenttype");
			json_data = v.len >= 16 && memcmp(v.ptr, "application/json", 16) == 0;
		} else {
			continue;
		}
		put_attr(b, &first, name, v.ptr, v.len);
	}
	char tmp[1024];
	if (!is_ce) { /* a plain Kafka record: attributes from where it lives */
		static const char fixed[] = ",\"type\":\"factlog.record\",\"specversion\":\"1.0\",\"time\":\"";
		buf_append(b, first ? "\"id\":" : ",\"id\":", first ? 5 : 6);
		first = false;
		/* the id, T-P-O, after a place for its opening quote */
		size_t n = 1;
		memcpy(tmp + n, rec->topic, tl);
		n += tl;
		tmp[n++] = '-';
		memcpy(tmp + n, pnum, pl);
		n += pl;
		tmp[n++] = '-';
		memcpy(tmp + n, onum, ol);
		n += ol;
		if (plain_topic) { /* one append: "id":"T-P-O","source":"/factlog/topics/T","type":...,"time":"...Z" */
			tmp[0] = '"';
			n += put_lit(tmp + n, "\",\"source\":\"/factlog/topics/");
			memcpy(tmp + n, rec->topic, tl);
			n += tl;
			tmp[n++] = '"';
		} else {
			put_str(b, (const uint8_t *)tmp + 1, n - 1);
			buf_append(b, ",\"source\":", 10);
			memcpy(tmp, "/factlog/topics/", 16);
			memcpy(tmp + 16, rec->topic, tl);
			put_str(b, (const uint8_t *)tmp, 16 + tl);
			n = 0;
		}
		memcpy(tmp + n, fixed, sizeof fixed - 1);
		n += sizeof fixed - 1;
		fmt_time(rec->timestamp, tmp + n);
		n += 24;
		tmp[n++] = '"';
		buf_append(b, tmp, n);
	}
	if (!rec->key_null) {
		size_t mark = b->len;
		put_attr(b, &first, "partitionkey", rec->key.ptr ? rec->key.ptr : (const uint8_t *)"", rec->key.len);
		bool text = true;
		for (size_t i = 0; i < rec->key.len && text;) {
			if (rec->key.ptr[i] != 0 && rec->key.ptr[i] < 0x80) {
				i++;
				continue;
			}
			size_t k = utf8_seq(rec->key.ptr + i, rec->key.len - i);
			text = k > 0 && rec->key.ptr[i] != 0;
			i += k ? k : 1;
		}
		if (!text) {
			b->len = mark;
			put_attr(b, &first, "partitionkey", (const uint8_t *)"(binary key)", 12);
		}
	}
	if (!rec->value_null) {
		slice_t v = rec->value;
		buf_append(b, first ? "" : ",", first ? 0 : 1);
		first = false;
		if (json_data && json_text_valid(v)) {
			buf_append(b, "\"data\":", 7);
			buf_append(b, v.ptr, v.len);
		} else {
			size_t mark = b->len;
			buf_append(b, "\"data\":", 7);
			if (!put_str(b, v.ptr ? v.ptr : (const uint8_t *)"", v.len)) {
				b->len = mark;
				buf_append(b, "\"data_base64\":\"", 15);
				b64_encode(v.ptr, v.len, b);
				buf_append(b, "\"", 1);
			}
		}
	}
	size_t n = 0;
	if (!first)
		tmp[n++] = ',';
	if (with_topic) {
		if (plain_topic) {
			n += put_lit(tmp + n, "\"topic\":\"");
			memcpy(tmp + n, rec->topic, tl);
			n += tl;
			n += put_lit(tmp + n, "\",");
		} else {
			buf_append(b, tmp, n);
			buf_append(b, "\"topic\":", 8);
			put_str(b, (const uint8_t *)rec->topic, strlen(rec->topic));
			tmp[0] = ',';
			n = 1;
		}
	}
	n += put_lit(tmp + n, "\"partition\":"); /* "partition":P,"offset":O} in one append */
	memcpy(tmp + n, pnum, pl);
	n += pl;
	n += put_lit(tmp + n, ",\"offset\":");
	memcpy(tmp + n, onum, ol);
	n += ol;
	tmp[n++] = '}';
	buf_append(b, tmp, n);
}

json_t *ce_text_parse(const char *text, size_t len)
{
	json_t *o = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
	if (o == NULL) /* valid JSON that jansson cannot hold as such: integers beyond 64 bits */
		o = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
	return o;
}

json_t *ce_record_to_json(const ce_kafka_record_t *rec)
{
	buf_t b = { 0 };
	ce_record_to_text(rec, false, &b);
	json_t *o = ce_text_parse((const char *)b.data, b.len);
	buf_free(&b);
	return o != NULL ? o : json_object(); /* the text is valid JSON by construction */
}

int32_t ce_partition_for_key(slice_t key, int32_t partitions)
{
	/* murmur2, seed 0x9747b28c, as org.apache.kafka.common.utils.Utils.murmur2 */
	const uint32_t m = 0x5bd1e995;
	const int r = 24;
	uint32_t h = 0x9747b28cu ^ (uint32_t)key.len;
	size_t n4 = key.len / 4;
	for (size_t i = 0; i < n4; i++) {
		const uint8_t *p = key.ptr + 4 * i;
		uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
		k *= m;
		k ^= k >> r;
		k *= m;
		h *= m;
		h ^= k;
	}
	const uint8_t *t = key.ptr + 4 * n4;
	switch (key.len % 4) {
	case 3: h ^= (uint32_t)t[2] << 16; /* fall through */
	case 2: h ^= (uint32_t)t[1] << 8;  /* fall through */
	case 1: h ^= t[0]; h *= m;
	}
	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return (int32_t)((h & 0x7fffffff) % (uint32_t)partitions);
}
