/* fuzz_appfile.c -- the app file parser on arbitrary bytes: it must never crash, hang or leak, and an input
 * it accepts must describe an app that keeps the invariants of appfile.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/appfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	app_t *a = app_parse((const char *)data, size, "fuzz.yml", err, sizeof err);
	if (a == NULL) {
		if (strnlen(err, sizeof err) == 0)
			abort(); /* a failure always explains itself */
		return 0;
	}
	for (int i = 0; i < a->nfunctions; i++) {
		const fn_def_t *fn = &a->functions[i];
		if ((fn->run == NULL) == (fn->http == NULL) || fn->ntriggers < 1 || fn->max_workers < fn->min_workers)
			abort();
		if (app_function(a, fn->name) != fn)
			abort();
		for (int j = 0; j < fn->ntriggers; j++) {
			const fn_trigger_t *t = &fn->triggers[j];
			if (t->stream == NULL || t->group == NULL || t->retry_max_ms < t->retry_base_ms ||
			    (t->filter_json != NULL && t->filter == NULL))
				abort();
		}
	}
	app_free(a);
	return 0;
}
