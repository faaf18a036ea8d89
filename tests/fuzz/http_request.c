/* Fuzzes the HTTP request path end to end: raw bytes from a client socket
 * through h2o's parser, Sluice's server layer, routing, auth, the JSON decoder
 * and the gateway, to the response. One in-process server (one worker, the
 * real gateway) lives for the whole run; each input is sent on a fresh TCP
 * connection whose write side is then shut, and the reply is read to EOF.
 * The one backend points at a port where nothing listens, so requests that
 * get as far as routing fail fast with 502 and no outside traffic.
 * A crash or sanitizer report in the server's thread fails the run. */
#include "config/config.h"
#include "gateway/gateway.h"
#include "http/http.h"
#include "obs/obs.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int server_port;

static const char config_yaml[] = "model_list:\n"
                                  "  - model_name: m\n"
                                  "    params: {api_base: 'http://127.0.0.1:9/v1', model: m, connect_timeout: 1}\n"
                                  "router_settings: {num_retries: 0}\n"
                                  "server: {max_body_bytes: 65536, access_log: false}\n";

static void start_server(void)
{
    signal(SIGPIPE, SIG_IGN);
    sl_log_set_level(SL_LOG_ERROR);
    sl_config *cfg = NULL;
    sl_config_diags d = {0};
    if (sl_config_load_string(config_yaml, sizeof config_yaml - 1, "fuzz.yaml", &cfg, &d) != 0) {
        fprintf(stderr, "fuzz config does not load\n");
        abort();
    }
    sl_config_diags_free(&d);
    sl_metrics *m = sl_metrics_create();
    sl_gateway *g = NULL;
    if (!m || sl_gateway_create(cfg, m, &g) != 0)
        abort();
    sl_http_opts o = {.host = "127.0.0.1", .port = 0, .workers = 1, .max_body_bytes = 65536,
                      .max_connections = 64, .req_timeout_ms = 2000};
    sl_http_server *s = NULL;
    char err[256];
    if (sl_http_server_start(&o, sl_gateway_handlers(g), &s, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz server: %s\n", err);
        abort();
    }
    server_port = sl_http_server_port(s);
    /* the server lives until the process exits */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!server_port)
        start_server();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    size_t off = 0;
    while (off < size) {
        ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    /* read the answer until the server closes; a hang past 5 s is a bug */
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 5000);
        if (r == 0) {
            fprintf(stderr, "the server did not close the connection within 5 s\n");
            abort();
        }
        if (r < 0)
            break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
    }
    close(fd);
    return 0;
}
