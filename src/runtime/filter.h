/*
 * filter.h -- EventBridge-style content filters over CloudEvents.
 *
 * Purpose: decide, without invoking a function, whether an event is for it. A pattern is a JSON object
 * matched against the event as a JSON CloudEvent (attributes at the top level, the payload under "data"):
 *   - every key of the pattern must match (AND); a nested object descends into the event's object;
 *   - a key's value is an array of matchers, any of which may match (OR):
 *       literal string/number/true/false/null   exact value (numbers compare numerically: 5 matches 5.0)
 *       {"prefix": "s"}  {"suffix": "s"}  {"equals-ignore-case": "s"}  {"wildcard": "a*b"}
 *       {"anything-but": literal | [literals] | {"prefix"|"suffix"|"equals-ignore-case"|"wildcard": "s"}}
 *       {"numeric": [">", 0, "<=", 5]}   (operators =, <, <=, >, >=; one comparison, or a range: a lower
 *                                          bound (> or >=) then an upper bound (< or <=), lower < upper)
 *       {"exists": true|false}
 *   - "$or": [pattern, pattern, ...] matches when any sub-pattern does (at any level, beside other keys);
 *   - when the event's value is an array, the key matches if any element does.
 *
 * Semantics in detail (following EventBridge):
 *   1. Matchers look at the leaf values at a key: a scalar (null included), or the scalars of an array,
 *      flattened up to 32 levels deep. An object, an empty array or a missing key holds no leaf value;
 *      there only {"exists": false} matches (so anything-but never matches a missing field).
 *   2. prefix, suffix, equals-ignore-case (ASCII letters fold) and wildcard match strings only; the
 *      anything-but forms of them match strings they reject. numeric matches numbers only. anything-but
 *      literals match any leaf value equal to none of them.
 *   3. wildcard: '*' matches any run of bytes; "\*" is a literal star, "\\" a literal backslash; any other
 *      escape and "**" are compile errors.
 *   4. A nested pattern against an array of objects matches when one element matches all of it; against
 *      a value with no object (missing, scalar) it is matched as an empty object.
 *   5. The top-level pattern {} matches every event; nested empty objects, empty arrays and empty $or
 *      are compile errors, as are leaf values that are not arrays.
 *   6. Limits: at most 32 levels of nested objects and $or below the top, at most 1000 matchers in all
 *      (each literal of an anything-but list counts).
 *
 * Invariants: filter_compile validates everything; filter_match never fails and never allocates.
 * Threads: a compiled filter is immutable; any number of threads may match against it at once.
 * Ownership: the compiled filter is independent of the pattern json (deep copies); free with filter_free.
 */
#ifndef FL_RUNTIME_FILTER_H
#define FL_RUNTIME_FILTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct filter filter_t;

/* Compiles a pattern. On error returns NULL and writes "<path>: <problem>" into err (path like
 * "data.price[0].numeric", "pattern" for the top level), e.g. "data.price[0]: unknown operator \"numerc\"".
 * err may be NULL; the message is cut to errcap bytes. */
filter_t *filter_compile(const json_t *pattern, char *err, size_t errcap);
/* True when the event matches. A NULL filter matches everything; a NULL or non-object event is matched
 * as an empty object (only {"exists": false} matches there). */
bool filter_match(const filter_t *f, const json_t *event);
void filter_free(filter_t *f);

#endif
