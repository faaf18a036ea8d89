/* sluice serve: load the config, start the gateway and the HTTP workers, and
 * handle signals on the main thread: SIGTERM/SIGINT drain then stop, SIGHUP
 * reloads the config (a bad new config is logged and the old one stays). */
#include "cli/cli.h"

#include "config/config.h"
#include "gateway/gateway.h"
#include "http/http.h"
#include "obs/obs.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct serve_state {
    const char *config_path;
    sl_gateway *gw;
    sl_http_server *http;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain_timer;
    bool draining;
    uint64_t drain_deadline_ms;
    int exit_code;
} serve_state;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice serve [-c FILE] [--host ADDR] [--port N] [--workers N] [--log-level LEVEL]\n"
               "  -c, --config FILE   YAML config (default: none; serve with defaults and no models)\n"
               "      --host ADDR     override server.listen's address\n"
               "      --port N        override server.listen's port (0 = pick a free port)\n"
               "      --workers N     override server.workers\n"
               "      --log-level L   debug, info, warn or error\n"
               "On start it prints 'sluice listening on ADDR:PORT' to stderr.\n"
               "SIGTERM/SIGINT drain in-flight requests (server.timeouts.drain), SIGHUP reloads the config.\n");
}

static void print_diags(const char *path, const sl_config_diags *d)
{
    char line[1024];
    for (size_t i = 0; i < d->n; i++) {
        sl_config_diag_format(path, &d->items[i], line, sizeof line);
        sl_log(d->items[i].is_error ? SL_LOG_ERROR : SL_LOG_WARN, "%s", line);
    }
}

static void close_all(serve_state *st)
{
    uv_signal_stop(&st->sigterm);
    uv_signal_stop(&st->sigint);
    uv_signal_stop(&st->sighup);
    uv_timer_stop(&st->drain_timer);
    uv_close((uv_handle_t *)&st->sigterm, NULL);
    uv_close((uv_handle_t *)&st->sigint, NULL);
    uv_close((uv_handle_t *)&st->sighup, NULL);
    uv_close((uv_handle_t *)&st->drain_timer, NULL);
}

static void on_drain_tick(uv_timer_t *t)
{
    serve_state *st = t->data;
    long inflight = sl_http_server_inflight(st->http);
    if (inflight == 0) {
        sl_info("drained: no request in flight, stopping");
        close_all(st);
        return;
    }
    if (sl_now_ms() >= st->drain_deadline_ms) {
        sl_warn("drain timeout: closing %ld request(s) still in flight", inflight);
        close_all(st);
    }
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    serve_state *st = s->data;
    if (st->draining) {
        sl_warn("second signal %d: stopping now", signum);
        close_all(st);
        return;
    }
    st->draining = true;
    sl_config *cfg = sl_gateway_config(st->gw);
    double secs = cfg->server.drain_timeout_s;
    sl_config_release(cfg);
    sl_info("signal %d: draining (up to %.0f s), no new connections", signum, secs);
    st->drain_deadline_ms = sl_now_ms() + (uint64_t)(secs * 1000);
    sl_http_server_drain(st->http);
    uv_timer_start(&st->drain_timer, on_drain_tick, 0, 50);
}

static void on_hup(uv_signal_t *s, int signum)
{
    (void)signum;
    serve_state *st = s->data;
    if (!st->config_path) {
        sl_warn("SIGHUP: no config file to reload (started without -c)");
        return;
    }
    sl_config *cfg = NULL;
    sl_config_diags d = {0};
    int rc = sl_config_load_file(st->config_path, &cfg, &d);
    print_diags(st->config_path, &d);
    sl_config_diags_free(&d);
    if (rc) {
        sl_error("reload of %s rejected: %s; the previous config stays in force", st->config_path,
                 sl_strerror(rc));
        return;
    }
    sl_config *old = sl_gateway_config(st->gw);
    if (old->server.port != cfg->server.port || old->server.workers != cfg->server.workers ||
        strcmp(old->server.host, cfg->server.host) != 0)
        sl_warn("reload: changes to server listen address or workers take effect only after a restart");
    sl_config_release(old);
    rc = sl_gateway_reload(st->gw, cfg);
    if (rc) {
        sl_config_release(cfg);
        sl_error("reload failed: %s; the previous config stays in force", sl_strerror(rc));
        return;
    }
    sl_info("reloaded %s", st->config_path);
}

static int parse_level(const char *s, sl_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (sl_log_level)i;
            return 0;
        }
    return SL_EINVAL;
}

int sl_cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},   {"workers", required_argument, NULL, 'w'},
        {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *host = NULL, *level = NULL;
    int port = -1, workers = -1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:p:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'w': workers = atoi(optarg); break;
        case 'l': level = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || port < -1 || port > 65535 || workers == 0 || workers < -1 || workers > 256) {
        usage(stderr);
        return 2;
    }

    sl_config *cfg = NULL;
    sl_config_diags d = {0};
    int rc = config_path ? sl_config_load_file(config_path, &cfg, &d) : sl_config_default(&cfg);
    if (config_path)
        print_diags(config_path, &d);
    sl_config_diags_free(&d);
    if (rc) {
        fprintf(stderr, "sluice: cannot load config %s: %s\n", config_path ? config_path : "(defaults)",
                sl_strerror(rc));
        return 1;
    }
    sl_log_level lvl;
    if (level || cfg->server.log_level) {
        if (parse_level(level ? level : cfg->server.log_level, &lvl) != 0) {
            fprintf(stderr, "sluice: --log-level must be debug, info, warn or error\n");
            sl_config_release(cfg);
            return 2;
        }
        sl_log_set_level(lvl);
    }

    serve_state st;
    memset(&st, 0, sizeof st);
    st.config_path = config_path;
    sl_http_opts ho = {
        .host = host ? host : cfg->server.host,
        .port = port >= 0 ? port : cfg->server.port,
        .workers = workers > 0 ? workers : cfg->server.workers > 0 ? cfg->server.workers : sl_cpu_count(),
        .max_body_bytes = cfg->server.max_body_bytes,
        .max_connections = cfg->server.max_connections,
        .req_timeout_ms = (uint32_t)(cfg->server.header_timeout_s * 1000),
    };
    sl_metrics *metrics = sl_metrics_create();
    if (!metrics) {
        sl_config_release(cfg);
        return 1;
    }
    rc = sl_gateway_create(cfg, metrics, &st.gw);
    if (rc) {
        sl_config_release(cfg);
        sl_metrics_destroy(metrics);
        fprintf(stderr, "sluice: cannot start the gateway: %s\n", sl_strerror(rc));
        return 1;
    }
    char err[256] = "";
    rc = sl_http_server_start(&ho, sl_gateway_handlers(st.gw), &st.http, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sluice: cannot start the HTTP server: %s\n", err[0] ? err : sl_strerror(rc));
        sl_gateway_destroy(st.gw);
        sl_metrics_destroy(metrics);
        return 1;
    }
    /* printed whatever the log level: scripts and tests read the port from it */
    char ready[256];
    int rn = snprintf(ready, sizeof ready, "sluice listening on %s:%d (%d workers, %zu models)", ho.host,
                      sl_http_server_port(st.http), ho.workers, cfg->n_backends);
    sl_log_raw_line(ready, (size_t)rn < sizeof ready ? (size_t)rn : sizeof ready - 1);

    uv_loop_init(&st.loop);
    uv_signal_init(&st.loop, &st.sigterm);
    uv_signal_init(&st.loop, &st.sigint);
    uv_signal_init(&st.loop, &st.sighup);
    uv_timer_init(&st.loop, &st.drain_timer);
    st.sigterm.data = st.sigint.data = st.sighup.data = &st;
    st.drain_timer.data = &st;
    uv_signal_start(&st.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&st.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&st.sighup, on_hup, SIGHUP);
    uv_run(&st.loop, UV_RUN_DEFAULT);
    uv_loop_close(&st.loop);

    sl_http_server_stop(st.http);
    sl_gateway_destroy(st.gw);
    sl_metrics_destroy(metrics);
    sl_info("stopped");
    return st.exit_code;
}
