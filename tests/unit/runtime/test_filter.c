/* test_filter.c -- EventBridge-style content filters: every operator matching and not, arrays in events,
 * nested objects, $or, exists, every compile error with its path, the limits, and a model test against a
 * naive interpreter of the pattern json. Patterns and events are written with ' for " to stay readable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "runtime/filter.h"

/* JSON text with ' standing for ". */
static json_t *J(const char *text)
{
	char *s = strdup(text);
	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	json_error_t e;
	json_t *j = json_loads(s, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
	if (!j)
		fail_msg("bad test json %s: %s", s, e.text);
	free(s);
	return j;
}

static filter_t *compile_ok(const char *pattern)
{
	json_t *p = J(pattern);
	char err[256] = "";
	filter_t *f = filter_compile(p, err, sizeof err);
	if (!f)
		fail_msg("pattern %s did not compile: %s", pattern, err);
	json_decref(p);
	return f;
}

static bool M(const char *pattern, const char *event)
{
	filter_t *f = compile_ok(pattern);
	json_t *e = J(event);
	bool r = filter_match(f, e);
	json_decref(e);
	filter_free(f);
	return r;
}

#define MATCH(p, e) assert_true(M(p, e))
#define NO_MATCH(p, e) assert_false(M(p, e))

static void expect_err_json(const json_t *p, const char *msg)
{
	char err[512] = "";
	filter_t *f = filter_compile(p, err, sizeof err);
	if (f) {
		filter_free(f);
		fail_msg("compiled, expected error: %s", msg);
	}
	assert_string_equal(err, msg);
}

static void expect_err(const char *pattern, const char *msg)
{
	json_t *p = J(pattern);
	expect_err_json(p, msg);
	json_decref(p);
}

/* ---- operators ------------------------------------------------------------------------------------ */

static void test_literals(void **state)
{
	(void)state;
	MATCH("{'source': ['shop']}", "{'source': 'shop'}");
	NO_MATCH("{'source': ['shop']}", "{'source': 'shops'}");
	NO_MATCH("{'source': ['shop']}", "{'source': 'Shop'}");
	NO_MATCH("{'source': ['shop']}", "{'other': 'shop'}");
	/* numbers compare numerically, never as text */
	MATCH("{'n': [5]}", "{'n': 5}");
	MATCH("{'n': [5]}", "{'n': 5.0}");
	MATCH("{'n': [5.0]}", "{'n': 5}");
	MATCH("{'n': [0.5]}", "{'n': 5e-1}");
	NO_MATCH("{'n': [5]}", "{'n': '5'}");
	NO_MATCH("{'n': ['5']}", "{'n': 5}");
	NO_MATCH("{'n': [5]}", "{'n': 5.000001}");
	MATCH("{'n': [9007199254740993]}", "{'n': 9007199254740993}");
	NO_MATCH("{'n': [9007199254740993]}", "{'n': 9007199254740992}");
	MATCH("{'n': [-3]}", "{'n': -3}");
	/* true, false and null are their own values */
	MATCH("{'b': [true]}", "{'b': true}");
	NO_MATCH("{'b': [true]}", "{'b': false}");
	NO_MATCH("{'b': [true]}", "{'b': 'true'}");
	NO_MATCH("{'b': [true]}", "{'b': 1}");
	MATCH("{'b': [false]}", "{'b': false}");
	NO_MATCH("{'b': [false]}", "{'b': null}");
	MATCH("{'x': [null]}", "{'x': null}");
	NO_MATCH("{'x': [null]}", "{'x': ''}");
	NO_MATCH("{'x': [null]}", "{}");
	MATCH("{'x': ['']}", "{'x': ''}");
	NO_MATCH("{'x': ['']}", "{'x': null}");
	/* OR within a key, AND across keys */
	MATCH("{'t': ['a', 'b', 3]}", "{'t': 'b'}");
	MATCH("{'t': ['a', 'b', 3]}", "{'t': 3}");
	NO_MATCH("{'t': ['a', 'b', 3]}", "{'t': 'c'}");
	MATCH("{'t': ['a'], 'u': [1]}", "{'t': 'a', 'u': 1, 'v': 2}");
	NO_MATCH("{'t': ['a'], 'u': [1]}", "{'t': 'a', 'u': 2}");
	NO_MATCH("{'t': ['a'], 'u': [1]}", "{'t': 'a'}");
	/* a literal does not match an object value */
	NO_MATCH("{'t': ['a']}", "{'t': {'a': 1}}");
}

static void test_strings_with_nul(void **state)
{
	(void)state;
	MATCH("{'k': ['a\\u0000b']}", "{'k': 'a\\u0000b'}");
	NO_MATCH("{'k': ['a\\u0000b']}", "{'k': 'a\\u0000c'}");
	NO_MATCH("{'k': ['a\\u0000b']}", "{'k': 'a'}");
	NO_MATCH("{'k': ['a']}", "{'k': 'a\\u0000b'}");
	/* keys holding NUL (built by hand: the parser refuses them) */
	json_t *p = json_object(), *ev = json_object();
	json_object_setn_new(p, "k\0x", 3, json_pack("[s]", "v"));
	json_object_setn_new(ev, "k\0x", 3, json_string("v"));
	char err[128];
	filter_t *f = filter_compile(p, err, sizeof err);
	assert_non_null(f);
	assert_true(filter_match(f, ev));
	json_object_del(ev, "k");
	json_object_set_new(ev, "k", json_string("v"));
	json_object_deln(ev, "k\0x", 3);
	assert_false(filter_match(f, ev));
	filter_free(f);
	json_decref(ev);
	json_decref(p);
	MATCH("{'k': [{'prefix': 'a\\u0000'}]}", "{'k': 'a\\u0000b'}");
	NO_MATCH("{'k': [{'prefix': 'a\\u0000'}]}", "{'k': 'a'}");
}

static void test_prefix_suffix(void **state)
{
	(void)state;
	MATCH("{'t': [{'prefix': 'order.'}]}", "{'t': 'order.created'}");
	MATCH("{'t': [{'prefix': 'order.'}]}", "{'t': 'order.'}");
	NO_MATCH("{'t': [{'prefix': 'order.'}]}", "{'t': 'order'}");
	NO_MATCH("{'t': [{'prefix': 'order.'}]}", "{'t': 'xorder.created'}");
	NO_MATCH("{'t': [{'prefix': 'Order'}]}", "{'t': 'order'}");
	NO_MATCH("{'t': [{'prefix': '1'}]}", "{'t': 12}");
	NO_MATCH("{'t': [{'prefix': ''}]}", "{'t': null}");
	MATCH("{'t': [{'prefix': ''}]}", "{'t': ''}");
	NO_MATCH("{'t': [{'prefix': ''}]}", "{}");
	MATCH("{'t': [{'suffix': '.png'}]}", "{'t': 'a/b.png'}");
	MATCH("{'t': [{'suffix': '.png'}]}", "{'t': '.png'}");
	NO_MATCH("{'t': [{'suffix': '.png'}]}", "{'t': 'png'}");
	NO_MATCH("{'t': [{'suffix': '.png'}]}", "{'t': 'a.png.jpg'}");
	NO_MATCH("{'t': [{'suffix': '5'}]}", "{'t': 5}");
	MATCH("{'t': [{'suffix': ''}]}", "{'t': 'x'}");
	MATCH("{'t': [{'prefix': 'a'}, {'suffix': 'z'}]}", "{'t': 'xyz'}");
}

static void test_equals_ignore_case(void **state)
{
	(void)state;
	MATCH("{'t': [{'equals-ignore-case': 'Hello World'}]}", "{'t': 'hELLO wORLD'}");
	MATCH("{'t': [{'equals-ignore-case': 'abc'}]}", "{'t': 'abc'}");
	NO_MATCH("{'t': [{'equals-ignore-case': 'abc'}]}", "{'t': 'abcd'}");
	NO_MATCH("{'t': [{'equals-ignore-case': 'abc'}]}", "{'t': 'ab'}");
	NO_MATCH("{'t': [{'equals-ignore-case': 'a-c'}]}", "{'t': 'a_c'}");
	NO_MATCH("{'t': [{'equals-ignore-case': '[a]'}]}", "{'t': '{A}'}"); /* only letters fold */
	NO_MATCH("{'t': [{'equals-ignore-case': 'true'}]}", "{'t': true}");
	MATCH("{'t': [{'equals-ignore-case': ''}]}", "{'t': ''}");
}

static void test_wildcard(void **state)
{
	(void)state;
	MATCH("{'t': [{'wildcard': 'a*b*'}]}", "{'t': 'ab'}");
	MATCH("{'t': [{'wildcard': 'a*b*'}]}", "{'t': 'axxbyy'}");
	NO_MATCH("{'t': [{'wildcard': 'a*b*'}]}", "{'t': 'xab'}");
	NO_MATCH("{'t': [{'wildcard': 'a*b*'}]}", "{'t': 'axx'}");
	MATCH("{'t': [{'wildcard': '*'}]}", "{'t': ''}");
	MATCH("{'t': [{'wildcard': '*'}]}", "{'t': 'anything'}");
	NO_MATCH("{'t': [{'wildcard': '*'}]}", "{'t': 1}");
	NO_MATCH("{'t': [{'wildcard': '*'}]}", "{}");
	MATCH("{'t': [{'wildcard': '*.png'}]}", "{'t': 'dir/x.png'}");
	NO_MATCH("{'t': [{'wildcard': '*.png'}]}", "{'t': 'dir/x.png.gz'}");
	MATCH("{'t': [{'wildcard': 'arn:*:bucket/*'}]}", "{'t': 'arn:aws:s3:bucket/key'}");
	MATCH("{'t': [{'wildcard': 'exact'}]}", "{'t': 'exact'}");
	NO_MATCH("{'t': [{'wildcard': 'exact'}]}", "{'t': 'exactly'}");
	MATCH("{'t': [{'wildcard': ''}]}", "{'t': ''}");
	NO_MATCH("{'t': [{'wildcard': ''}]}", "{'t': 'a'}");
	/* pieces may not overlap the anchored ends */
	NO_MATCH("{'t': [{'wildcard': 'ab*ba'}]}", "{'t': 'aba'}");
	MATCH("{'t': [{'wildcard': 'ab*ba'}]}", "{'t': 'abba'}");
	MATCH("{'t': [{'wildcard': '*ab*ab*'}]}", "{'t': 'xabab'}");
	NO_MATCH("{'t': [{'wildcard': '*ab*ab*'}]}", "{'t': 'xaba'}");
	MATCH("{'t': [{'wildcard': 'a*aa*a'}]}", "{'t': 'aaaa'}");
	NO_MATCH("{'t': [{'wildcard': 'a*aa*a'}]}", "{'t': 'aaa'}");
	/* \* is a literal star, \\ a literal backslash */
	MATCH("{'t': [{'wildcard': 'a\\\\*b'}]}", "{'t': 'a*b'}");
	NO_MATCH("{'t': [{'wildcard': 'a\\\\*b'}]}", "{'t': 'axb'}");
	MATCH("{'t': [{'wildcard': 'a\\\\\\\\*'}]}", "{'t': 'a\\\\xyz'}");
	NO_MATCH("{'t': [{'wildcard': 'a\\\\\\\\*'}]}", "{'t': 'axyz'}");
	MATCH("{'t': [{'wildcard': '*\\\\**'}]}", "{'t': 'x*y'}");
	NO_MATCH("{'t': [{'wildcard': '*\\\\**'}]}", "{'t': 'xy'}");
}

static void test_anything_but(void **state)
{
	(void)state;
	MATCH("{'s': [{'anything-but': 'pending'}]}", "{'s': 'done'}");
	NO_MATCH("{'s': [{'anything-but': 'pending'}]}", "{'s': 'pending'}");
	NO_MATCH("{'s': [{'anything-but': 'pending'}]}", "{}"); /* a missing field matches nothing */
	NO_MATCH("{'s': [{'anything-but': 'pending'}]}", "{'s': {'x': 1}}");
	NO_MATCH("{'s': [{'anything-but': 'pending'}]}", "{'s': []}");
	MATCH("{'s': [{'anything-but': 'pending'}]}", "{'s': 3}");
	MATCH("{'s': [{'anything-but': 'pending'}]}", "{'s': null}");
	MATCH("{'s': [{'anything-but': ['a', 'b']}]}", "{'s': 'c'}");
	NO_MATCH("{'s': [{'anything-but': ['a', 'b']}]}", "{'s': 'a'}");
	NO_MATCH("{'s': [{'anything-but': ['a', 'b']}]}", "{'s': 'b'}");
	MATCH("{'n': [{'anything-but': [1, 2]}]}", "{'n': 3}");
	NO_MATCH("{'n': [{'anything-but': [1, 2]}]}", "{'n': 2.0}");
	MATCH("{'n': [{'anything-but': [1, 2]}]}", "{'n': '1'}");
	NO_MATCH("{'n': [{'anything-but': null}]}", "{'n': null}");
	MATCH("{'n': [{'anything-but': null}]}", "{'n': false}");
	NO_MATCH("{'n': [{'anything-but': [true, false]}]}", "{'n': true}");
	/* anything-but an operator: strings the operator rejects; other types do not match */
	MATCH("{'t': [{'anything-but': {'prefix': 'test.'}}]}", "{'t': 'prod.x'}");
	NO_MATCH("{'t': [{'anything-but': {'prefix': 'test.'}}]}", "{'t': 'test.x'}");
	NO_MATCH("{'t': [{'anything-but': {'prefix': 'test.'}}]}", "{'t': 5}");
	NO_MATCH("{'t': [{'anything-but': {'prefix': 'test.'}}]}", "{}");
	MATCH("{'t': [{'anything-but': {'suffix': '.tmp'}}]}", "{'t': 'a.txt'}");
	NO_MATCH("{'t': [{'anything-but': {'suffix': '.tmp'}}]}", "{'t': 'a.tmp'}");
	MATCH("{'t': [{'anything-but': {'equals-ignore-case': 'abc'}}]}", "{'t': 'abd'}");
	NO_MATCH("{'t': [{'anything-but': {'equals-ignore-case': 'abc'}}]}", "{'t': 'ABC'}");
	MATCH("{'t': [{'anything-but': {'wildcard': '*.tmp'}}]}", "{'t': 'a.txt'}");
	NO_MATCH("{'t': [{'anything-but': {'wildcard': '*.tmp'}}]}", "{'t': 'x/a.tmp'}");
	/* against an array: some element is not excluded */
	MATCH("{'s': [{'anything-but': 'a'}]}", "{'s': ['a', 'b']}");
	NO_MATCH("{'s': [{'anything-but': 'a'}]}", "{'s': ['a', 'a']}");
	NO_MATCH("{'s': [{'anything-but': ['a', 'b']}]}", "{'s': ['b', 'a']}");
}

static void test_numeric(void **state)
{
	(void)state;
	MATCH("{'p': [{'numeric': ['=', 5]}]}", "{'p': 5}");
	MATCH("{'p': [{'numeric': ['=', 5]}]}", "{'p': 5.0}");
	NO_MATCH("{'p': [{'numeric': ['=', 5]}]}", "{'p': 5.5}");
	MATCH("{'p': [{'numeric': ['<', 5]}]}", "{'p': 4.999}");
	NO_MATCH("{'p': [{'numeric': ['<', 5]}]}", "{'p': 5}");
	MATCH("{'p': [{'numeric': ['<=', 5]}]}", "{'p': 5}");
	NO_MATCH("{'p': [{'numeric': ['<=', 5]}]}", "{'p': 5.001}");
	MATCH("{'p': [{'numeric': ['>', 5]}]}", "{'p': 6}");
	NO_MATCH("{'p': [{'numeric': ['>', 5]}]}", "{'p': 5}");
	MATCH("{'p': [{'numeric': ['>=', 5]}]}", "{'p': 5}");
	NO_MATCH("{'p': [{'numeric': ['>=', 5]}]}", "{'p': 4}");
	MATCH("{'p': [{'numeric': ['>', -1.5]}]}", "{'p': -1}");
	/* ranges, with each kind of boundary */
	MATCH("{'p': [{'numeric': ['>', 0, '<=', 5]}]}", "{'p': 5}");
	MATCH("{'p': [{'numeric': ['>', 0, '<=', 5]}]}", "{'p': 0.0001}");
	NO_MATCH("{'p': [{'numeric': ['>', 0, '<=', 5]}]}", "{'p': 0}");
	NO_MATCH("{'p': [{'numeric': ['>', 0, '<=', 5]}]}", "{'p': 5.5}");
	MATCH("{'p': [{'numeric': ['>=', 0, '<', 5]}]}", "{'p': 0}");
	NO_MATCH("{'p': [{'numeric': ['>=', 0, '<', 5]}]}", "{'p': 5}");
	MATCH("{'p': [{'numeric': ['>=', 0, '<', 5]}]}", "{'p': 4.99}");
	NO_MATCH("{'p': [{'numeric': ['>=', 0, '<', 5]}]}", "{'p': -0.01}");
	MATCH("{'p': [{'numeric': ['>=', 1, '<=', 1.5]}]}", "{'p': 1.5}");
	/* numeric matches numbers only */
	NO_MATCH("{'p': [{'numeric': ['>', 0]}]}", "{'p': '5'}");
	NO_MATCH("{'p': [{'numeric': ['>', 0]}]}", "{'p': true}");
	NO_MATCH("{'p': [{'numeric': ['<', 1]}]}", "{'p': null}");
	NO_MATCH("{'p': [{'numeric': ['<', 1]}]}", "{}");
	/* two numeric matchers are an OR; a range is an AND */
	MATCH("{'p': [{'numeric': ['<', 0]}, {'numeric': ['>', 10]}]}", "{'p': 11}");
	NO_MATCH("{'p': [{'numeric': ['<', 0]}, {'numeric': ['>', 10]}]}", "{'p': 5}");
	MATCH("{'p': [{'numeric': ['>', 0, '<', 10]}]}", "{'p': [20, 5]}");
	NO_MATCH("{'p': [{'numeric': ['>', 0, '<', 10]}]}", "{'p': [20, -5]}");
}

static void test_exists(void **state)
{
	(void)state;
	MATCH("{'k': [{'exists': true}]}", "{'k': 'v'}");
	MATCH("{'k': [{'exists': true}]}", "{'k': 0}");
	MATCH("{'k': [{'exists': true}]}", "{'k': null}");
	MATCH("{'k': [{'exists': true}]}", "{'k': ['v']}");
	NO_MATCH("{'k': [{'exists': true}]}", "{'other': 1}");
	MATCH("{'k': [{'exists': false}]}", "{'other': 1}");
	NO_MATCH("{'k': [{'exists': false}]}", "{'k': null}");
	NO_MATCH("{'k': [{'exists': false}]}", "{'k': ''}");
	/* exists looks at leaves: an object or an empty array holds no value at this key */
	NO_MATCH("{'k': [{'exists': true}]}", "{'k': {'a': 1}}");
	MATCH("{'k': [{'exists': false}]}", "{'k': {'a': 1}}");
	NO_MATCH("{'k': [{'exists': true}]}", "{'k': []}");
	MATCH("{'k': [{'exists': false}]}", "{'k': []}");
	/* below a missing or non-object parent nothing exists */
	MATCH("{'data': {'k': [{'exists': false}]}}", "{}");
	MATCH("{'data': {'k': [{'exists': false}]}}", "{'data': 5}");
	MATCH("{'data': {'k': [{'exists': false}]}}", "{'data': {'j': 1}}");
	NO_MATCH("{'data': {'k': [{'exists': false}]}}", "{'data': {'k': 1}}");
	NO_MATCH("{'data': {'k': [{'exists': true}]}}", "{}");
	NO_MATCH("{'data': {'k': [{'exists': true}]}}", "{'data': 'k'}");
	/* beside other matchers */
	MATCH("{'k': ['a', {'exists': false}]}", "{}");
	MATCH("{'k': ['a', {'exists': false}]}", "{'k': 'a'}");
	NO_MATCH("{'k': ['a', {'exists': false}]}", "{'k': 'b'}");
	/* combined with other keys */
	MATCH("{'a': [1], 'k': [{'exists': false}]}", "{'a': 1}");
	NO_MATCH("{'a': [1], 'k': [{'exists': false}]}", "{'a': 1, 'k': 2}");
}

/* ---- structure ------------------------------------------------------------------------------------ */

static void test_arrays_in_event(void **state)
{
	(void)state;
	MATCH("{'tags': ['red']}", "{'tags': ['blue', 'red']}");
	NO_MATCH("{'tags': ['red']}", "{'tags': ['blue', 'green']}");
	NO_MATCH("{'tags': ['red']}", "{'tags': []}");
	MATCH("{'tags': ['red', 'pink']}", "{'tags': ['pink']}");
	MATCH("{'tags': [{'prefix': 'r'}]}", "{'tags': [1, 'rose']}");
	MATCH("{'tags': ['red']}", "{'tags': [['x', ['red']]]}"); /* nested arrays flatten */
	NO_MATCH("{'tags': ['red']}", "{'tags': [{'red': 1}]}");
	/* a nested pattern against an array of objects: one element must match it all */
	MATCH("{'items': {'sku': ['b']}}", "{'items': [{'sku': 'a'}, {'sku': 'b'}]}");
	NO_MATCH("{'items': {'sku': ['c']}}", "{'items': [{'sku': 'a'}, {'sku': 'b'}]}");
	MATCH("{'items': {'sku': ['a'], 'n': [1]}}", "{'items': [{'sku': 'a', 'n': 1}, {'sku': 'b', 'n': 2}]}");
	NO_MATCH("{'items': {'sku': ['a'], 'n': [2]}}", "{'items': [{'sku': 'a', 'n': 1}, {'sku': 'b', 'n': 2}]}");
	MATCH("{'items': {'sku': ['b']}}", "{'items': [[{'sku': 'b'}], 3]}");
	MATCH("{'items': {'sku': [{'exists': false}]}}", "{'items': [{'sku': 'a'}, {'n': 1}]}");
	NO_MATCH("{'items': {'sku': [{'exists': false}]}}", "{'items': [{'sku': 'a'}]}");
	MATCH("{'items': {'sku': [{'exists': false}]}}", "{'items': []}");
	MATCH("{'items': {'sku': [{'exists': false}]}}", "{'items': [1, 2]}");
	MATCH("{'items': {'p': {'q': [1]}}}", "{'items': [{'p': [{'q': 2}, {'q': 1}]}]}");
}

static void test_deep_event_arrays(void **state)
{
	(void)state;
	/* arrays nested deeper than the flattening bound are not looked into, and do not recurse unboundedly */
	json_t *v = json_string("x");
	for (int i = 0; i < 32; i++) {
		json_t *a = json_array();
		json_array_append_new(a, v);
		v = a;
	}
	json_t *ev = json_object();
	json_object_set_new(ev, "t", v);
	filter_t *f = compile_ok("{'t': ['x']}");
	assert_true(filter_match(f, ev));
	json_t *outer = json_array();
	json_array_append(outer, v);
	json_object_set_new(ev, "t", outer);
	assert_false(filter_match(f, ev));
	filter_free(f);
	json_decref(ev);

	v = json_pack("{s:i}", "k", 1);
	for (int i = 0; i < 10000; i++) {
		json_t *a = json_array();
		json_array_append_new(a, v);
		v = a;
	}
	ev = json_pack("{s:o}", "t", v);
	f = compile_ok("{'t': {'k': [1]}}");
	assert_false(filter_match(f, ev));
	filter_free(f);
	f = compile_ok("{'t': [1, {'exists': true}]}");
	assert_false(filter_match(f, ev));
	filter_free(f);
	json_decref(ev);
}

static void test_nested(void **state)
{
	(void)state;
	const char *p = "{'source': ['shop'], 'data': {'order': {'total': [{'numeric': ['>', 100]}]}}}";
	MATCH(p, "{'source': 'shop', 'data': {'order': {'total': 150}}}");
	NO_MATCH(p, "{'source': 'shop', 'data': {'order': {'total': 50}}}");
	NO_MATCH(p, "{'source': 'bank', 'data': {'order': {'total': 150}}}");
	NO_MATCH(p, "{'source': 'shop', 'data': {'total': 150}}");
	NO_MATCH(p, "{'source': 'shop', 'data': {'order': 150}}");
	NO_MATCH(p, "{'source': 'shop', 'data': 'order'}");
	NO_MATCH(p, "{'source': 'shop'}");
	/* a nested pattern does not match a leaf of the same name */
	NO_MATCH("{'a': {'b': [1]}}", "{'a.b': 1}");
	NO_MATCH("{'a': {'b': [1]}}", "{'a': {'b': {'b': 1}}}");
	MATCH("{'a': {'b': [1], 'c': {'d': ['x']}}, 'e': [true]}", "{'a': {'b': 1, 'c': {'d': 'x'}}, 'e': true}");
	NO_MATCH("{'a': {'b': [1], 'c': {'d': ['x']}}, 'e': [true]}", "{'a': {'b': 1, 'c': {'d': 'y'}}, 'e': true}");
}

static void test_or(void **state)
{
	(void)state;
	const char *p = "{'$or': [{'a': [1]}, {'b': [2]}]}";
	MATCH(p, "{'a': 1}");
	MATCH(p, "{'b': 2}");
	MATCH(p, "{'a': 1, 'b': 2}");
	NO_MATCH(p, "{'a': 2, 'b': 1}");
	NO_MATCH(p, "{}");
	/* beside sibling keys, $or is one more AND term */
	p = "{'source': ['shop'], '$or': [{'a': [1]}, {'b': [{'exists': false}]}]}";
	MATCH(p, "{'source': 'shop', 'a': 1, 'b': 5}");
	MATCH(p, "{'source': 'shop'}");
	NO_MATCH(p, "{'source': 'shop', 'b': 5}");
	NO_MATCH(p, "{'source': 'bank', 'a': 1}");
	/* nested: the alternatives see the nested object */
	p = "{'data': {'kind': ['x'], '$or': [{'n': [{'numeric': ['<', 0]}]}, {'tag': {'v': ['hot']}}]}}";
	MATCH(p, "{'data': {'kind': 'x', 'n': -1}}");
	MATCH(p, "{'data': {'kind': 'x', 'n': 5, 'tag': {'v': 'hot'}}}");
	NO_MATCH(p, "{'data': {'kind': 'x', 'n': 5, 'tag': {'v': 'cold'}}}");
	NO_MATCH(p, "{'data': {'kind': 'y', 'n': -1}}");
	NO_MATCH(p, "{'n': -1, 'data': {'kind': 'x'}}");
	/* $or inside $or, and alternatives with several keys */
	p = "{'$or': [{'a': [1], 'b': [1]}, {'$or': [{'c': [1]}, {'d': {'e': [1]}}]}]}";
	MATCH(p, "{'a': 1, 'b': 1}");
	NO_MATCH(p, "{'a': 1, 'b': 2}");
	MATCH(p, "{'c': 1}");
	MATCH(p, "{'d': {'e': 1}}");
	NO_MATCH(p, "{'d': {'e': 2}, 'c': 2}");
	/* one alternative is fine */
	MATCH("{'$or': [{'a': [1]}]}", "{'a': 1}");
	NO_MATCH("{'$or': [{'a': [1]}]}", "{'a': 2}");
	/* with arrays of objects, $or is evaluated per element */
	p = "{'items': {'$or': [{'a': [1]}, {'b': [1]}], 'c': [1]}}";
	MATCH(p, "{'items': [{'a': 1, 'c': 2}, {'b': 1, 'c': 1}]}");
	NO_MATCH(p, "{'items': [{'a': 1, 'c': 2}, {'b': 2, 'c': 1}]}");
}

static void test_null_and_empty(void **state)
{
	(void)state;
	json_t *ev = J("{'a': 1}");
	assert_true(filter_match(NULL, ev));
	assert_true(filter_match(NULL, NULL));
	filter_t *f = compile_ok("{}");
	assert_true(filter_match(f, ev));
	assert_true(filter_match(f, NULL));
	filter_free(f);
	filter_free(NULL);
	/* a missing or non-object event: only exists:false matches */
	f = compile_ok("{'a': [{'exists': false}]}");
	assert_true(filter_match(f, NULL));
	json_t *arr = J("[{'a': 1}]");
	assert_true(filter_match(f, arr));
	assert_false(filter_match(f, ev));
	filter_free(f);
	f = compile_ok("{'a': [1]}");
	assert_false(filter_match(f, NULL));
	assert_false(filter_match(f, arr));
	filter_free(f);
	json_decref(arr);
	json_decref(ev);
}

static void test_independent_of_pattern(void **state)
{
	(void)state;
	json_t *p = J("{'k': ['v', {'prefix': 'pre'}, {'wildcard': 'w*d'}, {'anything-but': ['x', 'y']}],"
		      " 'd': {'e': [{'suffix': 'end'}]}, '$or': [{'z': ['zz']}, {'y': [{'exists': false}]}]}");
	char err[128];
	filter_t *f = filter_compile(p, err, sizeof err);
	assert_non_null(f);
	/* trash the strings the pattern held, then drop it */
	json_object_set_new(p, "k", json_string("gone"));
	json_decref(p);
	json_t *ev = J("{'k': 'prefix', 'd': {'e': 'the end'}}");
	assert_true(filter_match(f, ev));
	json_decref(ev);
	ev = J("{'k': 'wood', 'd': {'e': 'the end'}, 'y': 1, 'z': 'zz'}");
	assert_true(filter_match(f, ev));
	json_decref(ev);
	ev = J("{'k': 'x', 'd': {'e': 'the end'}}");
	assert_false(filter_match(f, ev));
	json_decref(ev);
	filter_free(f);
}

/* ---- compile errors ------------------------------------------------------------------------------- */

static void test_errors_structure(void **state)
{
	(void)state;
	expect_err_json(NULL, "pattern: expected an object");
	expect_err("[]", "pattern: expected an object");
	expect_err("'x'", "pattern: expected an object");
	expect_err("{'a': 'x'}", "a: expected an array of matchers or an object");
	expect_err("{'a': 5}", "a: expected an array of matchers or an object");
	expect_err("{'a': null}", "a: expected an array of matchers or an object");
	expect_err("{'data': {'price': 5}}", "data.price: expected an array of matchers or an object");
	expect_err("{'ok': [1], 'data': {'x': {'y': true}}}", "data.x.y: expected an array of matchers or an object");
	expect_err("{'a': []}", "a: empty array");
	expect_err("{'data': {'a': []}}", "data.a: empty array");
	expect_err("{'a': {}}", "a: empty object");
	expect_err("{'a': {'b': {}}}", "a.b: empty object");
	expect_err("{'': 1}", "\"\": expected an array of matchers or an object");
	expect_err("{'a': {'': 1}}", "a.\"\": expected an array of matchers or an object");
	expect_err("{'a': [[1]]}", "a[0]: expected a literal or an operator object");
	expect_err("{'a': ['x', []]}", "a[1]: expected a literal or an operator object");
	expect_err("{'a': [{}]}", "a[0]: expected exactly one operator");
	expect_err("{'a': [{'prefix': 'x', 'suffix': 'y'}]}", "a[0]: expected exactly one operator");
	expect_err("{'data': {'price': [{'numerc': ['>', 1]}]}}", "data.price[0]: unknown operator \"numerc\"");
	expect_err("{'a': [1, {'$or': []}]}", "a[1]: unknown operator \"$or\"");
	expect_err("{'a': [{'Prefix': 'x'}]}", "a[0]: unknown operator \"Prefix\"");
}

static void test_errors_operators(void **state)
{
	(void)state;
	expect_err("{'a': ['x', {'prefix': 1}]}", "a[1].prefix: expected a string");
	expect_err("{'a': [{'suffix': null}]}", "a[0].suffix: expected a string");
	expect_err("{'a': [{'equals-ignore-case': ['x']}]}", "a[0].equals-ignore-case: expected a string");
	expect_err("{'a': [{'wildcard': {}}]}", "a[0].wildcard: expected a string");
	expect_err("{'a': [{'wildcard': 'a**'}]}", "a[0].wildcard: consecutive '*' are not allowed");
	expect_err("{'a': [{'wildcard': 'a\\\\q'}]}", "a[0].wildcard: only \\* and \\\\ may be escaped");
	expect_err("{'a': [{'wildcard': 'a\\\\'}]}", "a[0].wildcard: only \\* and \\\\ may be escaped");
	expect_err("{'a': [{'exists': 'yes'}]}", "a[0].exists: expected true or false");
	expect_err("{'a': [{'exists': 1}]}", "a[0].exists: expected true or false");
	/* numeric */
	const char *shape = "a[0].numeric: expected [op, number] or [op, number, op, number]";
	expect_err("{'a': [{'numeric': 5}]}", shape);
	expect_err("{'a': [{'numeric': []}]}", shape);
	expect_err("{'a': [{'numeric': ['>']}]}", shape);
	expect_err("{'a': [{'numeric': ['>', 1, '<']}]}", shape);
	expect_err("{'a': [{'numeric': ['>', 1, '<', 2, '=']}]}", shape);
	expect_err("{'a': [{'numeric': ['=>', 1]}]}", "a[0].numeric[0]: unknown comparison \"=>\"");
	expect_err("{'a': [{'numeric': [1, 1]}]}", "a[0].numeric[0]: expected a comparison operator");
	expect_err("{'a': [{'numeric': ['>', '1']}]}", "a[0].numeric[1]: expected a number");
	expect_err("{'a': [{'numeric': ['>', 0, '<>', 1]}]}", "a[0].numeric[2]: unknown comparison \"<>\"");
	expect_err("{'a': [{'numeric': ['>', 0, '<', null]}]}", "a[0].numeric[3]: expected a number");
	const char *order = "a[0].numeric: a range is a lower bound (> or >=) then an upper bound (< or <=)";
	expect_err("{'a': [{'numeric': ['<', 5, '>', 0]}]}", order);
	expect_err("{'a': [{'numeric': ['=', 1, '<', 2]}]}", order);
	expect_err("{'a': [{'numeric': ['>', 0, '>', 2]}]}", order);
	expect_err("{'a': [{'numeric': ['>', 0, '=', 2]}]}", order);
	const char *bounds = "a[0].numeric: the lower bound must be below the upper bound";
	expect_err("{'a': [{'numeric': ['>', 5, '<', 5]}]}", bounds);
	expect_err("{'a': [{'numeric': ['>=', 5, '<=', 5]}]}", bounds);
	expect_err("{'a': [{'numeric': ['>=', 6, '<=', 5.5]}]}", bounds);
	/* anything-but */
	expect_err("{'a': [{'anything-but': []}]}", "a[0].anything-but: empty array");
	expect_err("{'a': [{'anything-but': ['x', ['y']]}]}", "a[0].anything-but[1]: expected a literal");
	expect_err("{'a': [{'anything-but': [{'prefix': 'x'}]}]}", "a[0].anything-but[0]: expected a literal");
	expect_err("{'a': [{'anything-but': {}}]}", "a[0].anything-but: expected exactly one operator");
	expect_err("{'a': [{'anything-but': {'prefix': 'a', 'suffix': 'b'}}]}",
		   "a[0].anything-but: expected exactly one operator");
	expect_err("{'a': [{'anything-but': {'numeric': ['>', 1]}}]}",
		   "a[0].anything-but: unknown operator \"numeric\"");
	expect_err("{'a': [{'anything-but': {'exists': true}}]}", "a[0].anything-but: unknown operator \"exists\"");
	expect_err("{'a': [{'anything-but': {'prefix': 5}}]}", "a[0].anything-but.prefix: expected a string");
	expect_err("{'a': [{'anything-but': {'wildcard': '**'}}]}",
		   "a[0].anything-but.wildcard: consecutive '*' are not allowed");
}

static void test_errors_or(void **state)
{
	(void)state;
	expect_err("{'$or': {}}", "$or: expected an array of patterns");
	expect_err("{'$or': [{'a': [1]}, {'b': [1]}], 'c': {'$or': 'x'}}", "c.$or: expected an array of patterns");
	expect_err("{'$or': []}", "$or: empty array");
	expect_err("{'$or': [1]}", "$or[0]: expected an object");
	expect_err("{'$or': [{'a': [1]}, []]}", "$or[1]: expected an object");
	expect_err("{'$or': [{}]}", "$or[0]: empty object");
	expect_err("{'$or': [{'a': ['x']}, {'b': 1}]}", "$or[1].b: expected an array of matchers or an object");
	expect_err("{'data': {'$or': [{'x': [1]}, {'x': [{'bogus': 1}]}]}}",
		   "data.$or[1].x[0]: unknown operator \"bogus\"");
	expect_err("{'$or': [{'$or': [{'a': [{'numeric': ['>', 1, '<', 0]}]}]}]}",
		   "$or[0].$or[0].a[0].numeric: the lower bound must be below the upper bound");
}

static void test_err_buffer(void **state)
{
	(void)state;
	json_t *p = J("{'data': {'price': 5}}");
	assert_null(filter_compile(p, NULL, 0));
	char small[8];
	memset(small, 'z', sizeof small);
	assert_null(filter_compile(p, small, sizeof small));
	assert_string_equal(small, "data.pr");
	char one[1] = { 'z' };
	assert_null(filter_compile(p, one, 0));
	assert_int_equal(one[0], 'z');
	assert_null(filter_compile(p, one, 1));
	assert_int_equal(one[0], '\0');
	json_decref(p);
	/* a long path is cut short, not overrun */
	char key[400];
	memset(key, 'k', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	p = json_pack("{s:{s:i}}", key, key, 1);
	char err[1024];
	assert_null(filter_compile(p, err, sizeof err));
	assert_int_equal(strncmp(err, key, 200), 0);
	assert_true(strlen(err) < 320);
	assert_non_null(strstr(err, ": expected an array of matchers or an object"));
	json_decref(p);
}

/* ---- limits --------------------------------------------------------------------------------------- */

/* {"a": {"a": ... {"a": leaf}}} with `levels` nested objects below the top. */
static json_t *nest(int levels, const char *key, json_t *leaf)
{
	json_t *v = leaf;
	for (int i = 0; i < levels; i++)
		v = json_pack("{s:o}", key, v);
	return json_pack("{s:o}", key, v);
}

static void test_limit_depth(void **state)
{
	(void)state;
	json_t *p = nest(32, "a", json_pack("[i]", 1)); /* 32 nested objects: the most allowed */
	char err[512];
	filter_t *f = filter_compile(p, err, sizeof err);
	assert_non_null(f);
	json_t *ev = nest(32, "a", json_integer(1));
	assert_true(filter_match(f, ev));
	json_decref(ev);
	filter_free(f);
	json_decref(p);

	p = nest(33, "a", json_pack("[i]", 1));
	char want[512] = "a";
	for (int i = 0; i < 32; i++)
		strncat(want, ".a", sizeof want - strlen(want) - 1);
	strncat(want, ": nested deeper than 32 levels", sizeof want - strlen(want) - 1);
	expect_err_json(p, want);
	json_decref(p);

	/* $or levels count as nesting too */
	json_t *v = json_pack("{s:[i]}", "x", 1);
	for (int i = 0; i < 32; i++)
		v = json_pack("{s:[o]}", "$or", v);
	f = filter_compile(v, err, sizeof err);
	assert_non_null(f);
	ev = json_pack("{s:i}", "x", 1);
	assert_true(filter_match(f, ev));
	json_decref(ev);
	filter_free(f);
	v = json_pack("{s:[o]}", "$or", v);
	snprintf(want, sizeof want, "$or[0]");
	for (int i = 0; i < 32; i++)
		strncat(want, ".$or[0]", sizeof want - strlen(want) - 1);
	strncat(want, ": nested deeper than 32 levels", sizeof want - strlen(want) - 1);
	expect_err_json(v, want);
	json_decref(v);
}

static void test_limit_matchers(void **state)
{
	(void)state;
	json_t *arr = json_array();
	for (int i = 0; i < 1000; i++)
		json_array_append_new(arr, json_integer(i));
	json_t *p = json_pack("{s:O}", "a", arr);
	char err[256];
	filter_t *f = filter_compile(p, err, sizeof err);
	assert_non_null(f);
	json_t *ev = json_pack("{s:i}", "a", 999);
	assert_true(filter_match(f, ev));
	json_decref(ev);
	filter_free(f);
	json_decref(p);

	/* the limit is over the whole pattern */
	p = json_pack("{s:O,s:{s:[i]}}", "a", arr, "b", "c", 1);
	expect_err_json(p, "b.c[0]: more than 1000 matchers");
	json_decref(p);
	json_array_append_new(arr, json_integer(1000));
	p = json_pack("{s:O}", "a", arr);
	expect_err_json(p, "a[1000]: more than 1000 matchers");
	json_decref(p);

	/* each anything-but literal counts */
	p = json_pack("{s:[{s:O}]}", "a", "anything-but", arr);
	expect_err_json(p, "a[0].anything-but[1000]: more than 1000 matchers");
	json_decref(p);
	json_array_remove(arr, 1000);
	p = json_pack("{s:[{s:O}]}", "a", "anything-but", arr);
	f = filter_compile(p, err, sizeof err);
	assert_non_null(f);
	ev = json_pack("{s:i}", "a", 1000);
	assert_true(filter_match(f, ev));
	json_decref(ev);
	ev = json_pack("{s:i}", "a", 500);
	assert_false(filter_match(f, ev));
	json_decref(ev);
	filter_free(f);
	json_decref(p);
	json_decref(arr);
}

/* ---- model: the compiled filter against a naive interpreter of the pattern json -------------------- */

static uint64_t rng(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static size_t pick(uint64_t *x, size_t n)
{
	return (size_t)(rng(x) % n);
}

static bool glob(const char *p, const char *s)
{
	if (*p == '\0')
		return *s == '\0';
	if (*p == '*')
		return glob(p + 1, s) || (*s && glob(p, s + 1));
	return *s == *p && glob(p + 1, s + 1);
}

static bool ref_eq(const json_t *lit, const json_t *x)
{
	if (json_is_string(lit))
		return json_is_string(x) && strcmp(json_string_value(lit), json_string_value(x)) == 0;
	if (json_is_number(lit))
		return json_is_number(x) && json_number_value(lit) == json_number_value(x);
	return json_typeof(lit) == json_typeof(x);
}

static bool ref_cmp(const char *op, double x, double n)
{
	if (strcmp(op, "=") == 0)
		return x == n;
	if (strcmp(op, "<") == 0)
		return x < n;
	if (strcmp(op, "<=") == 0)
		return x <= n;
	if (strcmp(op, ">") == 0)
		return x > n;
	return x >= n;
}

static bool ref_strop(const char *op, const char *arg, const char *s)
{
	size_t n = strlen(s), a = strlen(arg);
	if (strcmp(op, "prefix") == 0)
		return strncmp(s, arg, a) == 0;
	if (strcmp(op, "suffix") == 0)
		return n >= a && strcmp(s + n - a, arg) == 0;
	if (strcmp(op, "equals-ignore-case") == 0)
		return strcasecmp(s, arg) == 0;
	return glob(arg, s);
}

/* One matcher (json, as written in the pattern) against one scalar of the event. */
static bool ref_scalar(const json_t *mt, const json_t *x)
{
	if (!json_is_object(mt))
		return ref_eq(mt, x);
	const char *op = json_object_iter_key(json_object_iter((json_t *)(uintptr_t)mt));
	const json_t *arg = json_object_get(mt, op);
	if (strcmp(op, "numeric") == 0) {
		if (!json_is_number(x))
			return false;
		for (size_t i = 0; i < json_array_size(arg); i += 2)
			if (!ref_cmp(json_string_value(json_array_get(arg, i)), json_number_value(x),
				     json_number_value(json_array_get(arg, i + 1))))
				return false;
		return true;
	}
	if (strcmp(op, "anything-but") == 0) {
		if (json_is_object(arg)) {
			const char *inner = json_object_iter_key(json_object_iter((json_t *)(uintptr_t)arg));
			const char *iarg = json_string_value(json_object_get(arg, inner));
			return json_is_string(x) && !ref_strop(inner, iarg, json_string_value(x));
		}
		if (!json_is_array(arg))
			return !ref_eq(arg, x);
		for (size_t i = 0; i < json_array_size(arg); i++)
			if (ref_eq(json_array_get(arg, i), x))
				return false;
		return true;
	}
	return json_is_string(x) && ref_strop(op, json_string_value(arg), json_string_value(x));
}

/* The model's events hold scalars or flat arrays of scalars at leaves. */
static bool ref_leaf(const json_t *matchers, const json_t *v)
{
	for (size_t i = 0; i < json_array_size(matchers); i++) {
		const json_t *mt = json_array_get(matchers, i);
		const json_t *ex = json_is_object(mt) ? json_object_get(mt, "exists") : NULL;
		if (ex) {
			bool present = v && !json_is_object(v) && !(json_is_array(v) && json_array_size(v) == 0);
			if (present == json_is_true(ex))
				return true;
			continue;
		}
		if (json_is_array(v)) {
			for (size_t j = 0; j < json_array_size(v); j++)
				if (ref_scalar(mt, json_array_get(v, j)))
					return true;
		} else if (v && !json_is_object(v) && ref_scalar(mt, v)) {
			return true;
		}
	}
	return false;
}

static bool ref_object(const json_t *pat, const json_t *ev)
{
	const char *k;
	const json_t *pv;
	json_object_foreach((json_t *)(uintptr_t)pat, k, pv) {
		const json_t *v = json_is_object(ev) ? json_object_get(ev, k) : NULL;
		bool ok;
		if (strcmp(k, "$or") == 0) {
			ok = false;
			for (size_t i = 0; i < json_array_size(pv); i++)
				ok = ok || ref_object(json_array_get(pv, i), ev);
		} else if (json_is_object(pv)) {
			ok = ref_object(pv, json_is_object(v) ? v : NULL);
		} else {
			ok = ref_leaf(pv, v);
		}
		if (!ok)
			return false;
	}
	return true;
}

static const char *const model_strs[] = { "", "x", "y", "xy", "yx", "X", "xyx", "yxy" };
static const double model_nums[] = { 0, 1, 2, 2.5, -1 };
static const char *const model_globs[] = { "*", "x*", "*x", "x*y", "*y*", "y*x*", "xyx", "", "*x*x" };
static const char *const model_ops[] = { "=", "<", "<=", ">", ">=" };

static json_t *model_scalar(uint64_t *x)
{
	switch (pick(x, 6)) {
	case 0:
	case 1:
		return json_string(model_strs[pick(x, 8)]);
	case 2:
		return json_integer((json_int_t)model_nums[pick(x, 2)]);
	case 3:
		return json_real(model_nums[pick(x, 5)]);
	case 4:
		return json_boolean(pick(x, 2));
	default:
		return json_null();
	}
}

static json_t *model_value(uint64_t *x)
{
	if (pick(x, 4))
		return model_scalar(x);
	json_t *a = json_array();
	for (size_t n = pick(x, 4); n > 0; n--)
		json_array_append_new(a, model_scalar(x));
	return a;
}

static json_t *model_event(uint64_t *x)
{
	static const char *const keys[] = { "a", "b", "c" };
	json_t *ev = json_object();
	for (int i = 0; i < 3; i++)
		if (pick(x, 4))
			json_object_set_new(ev, keys[i], model_value(x));
	size_t d = pick(x, 4);
	if (d == 1) {
		json_object_set_new(ev, "d", json_integer(1));
	} else if (d >= 2) {
		json_t *o = json_object();
		for (int i = 0; i < 2; i++)
			if (pick(x, 3))
				json_object_set_new(o, keys[i], model_value(x));
		json_object_set_new(ev, "d", o);
	}
	return ev;
}

static json_t *model_matcher(uint64_t *x)
{
	static const char *const strops[] = { "prefix", "suffix", "equals-ignore-case" };
	switch (pick(x, 8)) {
	case 0:
	case 1:
		return model_scalar(x);
	case 2:
		return json_pack("{s:s}", strops[pick(x, 3)], model_strs[pick(x, 6)]);
	case 3:
		return json_pack("{s:s}", "wildcard", model_globs[pick(x, 9)]);
	case 4:
		switch (pick(x, 3)) {
		case 0:
			return json_pack("{s:o}", "anything-but", model_scalar(x));
		case 1:
			return json_pack("{s:[o,o]}", "anything-but", model_scalar(x), model_scalar(x));
		default:
			return json_pack("{s:{s:s}}", "anything-but", strops[pick(x, 2)], model_strs[pick(x, 5)]);
		}
	case 5:
		return json_pack("{s:[s,f]}", "numeric", model_ops[pick(x, 5)], model_nums[pick(x, 5)]);
	case 6: {
		size_t lo = pick(x, 3); /* 0, 1 or 2: all below 2.5 */
		return json_pack("{s:[s,f,s,f]}", "numeric", pick(x, 2) ? ">" : ">=", model_nums[lo],
				 pick(x, 2) ? "<" : "<=", 2.5);
	}
	default:
		return json_pack("{s:b}", "exists", (int)pick(x, 2));
	}
}

static json_t *model_leaf(uint64_t *x)
{
	json_t *a = json_array();
	for (size_t n = 1 + pick(x, 3); n > 0; n--)
		json_array_append_new(a, model_matcher(x));
	return a;
}

static json_t *model_pattern(uint64_t *x, int depth)
{
	static const char *const keys[] = { "a", "b", "c" };
	json_t *p = json_object();
	size_t first = pick(x, 3), n = 1 + pick(x, 2);
	for (size_t i = 0; i < n; i++)
		json_object_set_new(p, keys[(first + i) % 3], model_leaf(x));
	if (depth == 0 && pick(x, 3) == 0) {
		json_t *d = json_object();
		json_object_set_new(d, keys[pick(x, 2)], model_leaf(x));
		json_object_set_new(p, "d", d);
	}
	if (depth == 0 && pick(x, 3) == 0)
		json_object_set_new(p, "$or", json_pack("[o,o]", model_pattern(x, 1), model_pattern(x, 1)));
	return p;
}

static void test_model(void **state)
{
	(void)state;
	uint64_t seed = 0x5eed;
	int hits = 0, runs = 0;
	for (int round = 0; round < 10000; round++) {
		json_t *p = model_pattern(&seed, 0);
		char err[256];
		filter_t *f = filter_compile(p, err, sizeof err);
		if (!f) {
			char *s = json_dumps(p, JSON_COMPACT);
			fail_msg("model pattern %s: %s", s, err);
		}
		for (int i = 0; i < 20; i++) {
			json_t *ev = model_event(&seed);
			bool want = ref_object(p, ev), got = filter_match(f, ev);
			if (want != got) {
				char *ps = json_dumps(p, JSON_COMPACT), *es = json_dumps(ev, JSON_COMPACT);
				fail_msg("pattern %s event %s: reference %d, filter %d", ps, es, want, got);
			}
			hits += got;
			runs++;
			json_decref(ev);
		}
		filter_free(f);
		json_decref(p);
	}
	/* both outcomes are well exercised */
	assert_true(hits > runs / 20);
	assert_true(hits < runs - runs / 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_strings_with_nul),
		cmocka_unit_test(test_prefix_suffix),
		cmocka_unit_test(test_equals_ignore_case),
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_anything_but),
		cmocka_unit_test(test_numeric),
		cmocka_unit_test(test_exists),
		cmocka_unit_test(test_arrays_in_event),
		cmocka_unit_test(test_deep_event_arrays),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_or),
		cmocka_unit_test(test_null_and_empty),
		cmocka_unit_test(test_independent_of_pattern),
		cmocka_unit_test(test_errors_structure),
		cmocka_unit_test(test_errors_operators),
		cmocka_unit_test(test_errors_or),
		cmocka_unit_test(test_err_buffer),
		cmocka_unit_test(test_limit_depth),
		cmocka_unit_test(test_limit_matchers),
		cmocka_unit_test(test_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
