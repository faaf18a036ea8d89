/*
 * gateway: the policy layer between the API and the backends.
 *
 * For each request it authenticates, applies the gateway-wide in-flight cap,
 * decodes and validates the body (api/), resolves the model group, picks a
 * backend, sends the attempt upstream (upstream/), retries before the first
 * byte reaches the client, falls back to other groups, and streams or returns
 * the answer. It also serves /v1/models, /healthz, /readyz and /metrics, and
 * writes one access-log line per request.
 *
 * It plugs into the HTTP server through sl_gateway_handlers(): the server
 * calls back through function pointers; http/ never includes this header.
 *
 * Configuration is an immutable snapshot (config + the routing table built
 * from it). sl_gateway_reload swaps in a new one; requests in flight keep the
 * snapshot they started with. Backend runtime state (in-flight counts,
 * failure streaks) is keyed by backend id and survives reloads.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include "config/config.h"
#include "core/core.h"
#include "http/http.h"
#include "obs/obs.h"

typedef struct sl_gateway sl_gateway;

/* Creates a gateway serving cfg (takes the caller's reference). metrics is borrowed. */
int sl_gateway_create(sl_config *cfg, sl_metrics *metrics, sl_gateway **out);
/* Frees the gateway; the HTTP server must be stopped first. */
void sl_gateway_destroy(sl_gateway *g);
/* Swaps in a new config (takes the reference); in-flight requests keep the old one. */
int sl_gateway_reload(sl_gateway *g, sl_config *cfg);
/* Returns the handlers to pass to sl_http_server_start; valid while g lives. */
const sl_http_handlers *sl_gateway_handlers(sl_gateway *g);
/* Proxied requests in flight right now (thread-safe). */
long sl_gateway_inflight(const sl_gateway *g);
/* Returns a new reference to the current config; caller releases. */
sl_config *sl_gateway_config(sl_gateway *g);

#endif
