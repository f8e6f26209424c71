/*
 * fnhost.h -- the server's holder of the functions runtime: started by `serve --app` or by the first
 * `deploy`, replaced by later deploys, and served over HTTP (/v1/functions, /v1/app) through the gateway's
 * extension hook, so http/ and runtime/ stay independent of each other.
 * Threads: every call takes h->mu; the runtime pointer is only used under it.
 */
#ifndef FL_SERVER_FNHOST_H
#define FL_SERVER_FNHOST_H

#include <pthread.h>
#include <stdbool.h>

#include "http/http.h"
#include "runtime/runtime.h"

typedef struct {
	pthread_mutex_t mu;
	runtime_t *rt;       /* NULL until an app is deployed */
	bool stopped;        /* fn_host_stop ran: a late deploy must not start a runtime nobody stops */
	runtime_opts_t opts;
	char bootstrap[512];
	char log_dir[4096];
} fn_host_t;

void fn_host_init(fn_host_t *h, const char *bootstrap, const char *log_dir);
/* Starts the runtime with app, or deploys app to the running one (app is taken). */
err_t fn_host_deploy(fn_host_t *h, app_t *app, char *err, size_t errcap);
void fn_host_stop(fn_host_t *h);
/* The http_ext_fn of the gateway (ctx is the fn_host_t). */
void fn_host_http(void *ctx, const http_ext_req_t *req, http_ext_reply_t *out);

#endif
