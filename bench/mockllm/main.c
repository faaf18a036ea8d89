/*
 * mockllm: an OpenAI-compatible fake upstream for integration tests, chaos
 * tests and benchmarks. It speaks HTTP/1.1 directly on libuv (keep-alive,
 * pipelining, Content-Length and chunked request bodies, chunked streaming
 * responses), one loop per worker thread on SO_REUSEPORT listeners.
 *
 * Faults (errors, hangs, cut streams, crashes) and timing (time to first
 * token, tokens per second) come from flags, overridden per request by a
 * "mock" object in the JSON body. The pure parts live in mock_text.c.
 *
 * Streaming respects write completion: at most one write is in flight per
 * connection, and the next batch of chunks is produced only when it finishes.
 */
#include "mock_text.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (32 * 1024 * 1024)
#define MAX_WORDS 100000
#define MAX_EMBED_INPUTS 4096
#define STREAM_BATCH (64 * 1024) /* bytes of SSE produced per write when not paced */
#define TIMELINE_MAX 10000
#define TIMELINE_BUCKET_MS 100

/* ---- configuration (immutable after start) ---- */

typedef struct config {
    const char *host;
    int port;
    int workers;
    sl_mock_opts defaults;
    double error_rate;
    int error_status;
    double hang_rate;
    long crash_after; /* 0 = never */
    int embedding_dim;
    const char *model;
} config;

static config g_cfg = {
    .host = "127.0.0.1",
    .port = 0,
    .workers = 1,
    .defaults = {.ttft_ms = 0, .tps = 0, .tokens = 16, .status = -1, .hang = false,
                 .cut_after = -1, .retry_after = -1},
    .error_rate = 0,
    .error_status = 500,
    .hang_rate = 0,
    .crash_after = 0,
    .embedding_dim = 8,
    .model = "mock-model",
};

/* ---- statistics (shared by all workers) ---- */

static const char *const k_paths[] = {"/v1/chat/completions", "/v1/completions",
                                      "/v1/embeddings", "/v1/models", "other"};
enum { PATH_CHAT, PATH_COMPLETIONS, PATH_EMBEDDINGS, PATH_MODELS, PATH_OTHER, PATH_COUNT };

static atomic_ulong st_requests, st_connections, st_errors, st_hangs, st_cuts;
static atomic_long st_active;
static atomic_ulong st_by_path[PATH_COUNT];
static uint64_t g_start_ns;

/* Timeline: ring of [bucket start ms, cumulative requests, peak requests in
 * progress], one point per 100 ms bucket in which a request arrived (the peak
 * is the most requests in progress seen at an arrival in the bucket, the
 * arriving one included). Guarded by tl_lock. */
static pthread_mutex_t tl_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tl_ms[TIMELINE_MAX], tl_cum[TIMELINE_MAX], tl_peak[TIMELINE_MAX];
static size_t tl_head, tl_len; /* oldest point at tl_head */

static void stats_request(int path_kind, long active)
{
    unsigned long cum = atomic_fetch_add(&st_requests, 1) + 1;
    atomic_fetch_add(&st_by_path[path_kind], 1);
    if (g_cfg.crash_after > 0 && cum == (unsigned long)g_cfg.crash_after)
        _exit(3);
    pthread_mutex_lock(&tl_lock);
    /* read the clock under the lock so that points stay in time order */
    uint64_t ms = (uv_hrtime() - g_start_ns) / 1000000;
    uint64_t bucket_ms = ms / TIMELINE_BUCKET_MS * TIMELINE_BUCKET_MS;
    size_t last = (tl_head + tl_len + TIMELINE_MAX - 1) % TIMELINE_MAX;
    if (tl_len > 0 && tl_ms[last] == bucket_ms) {
        if (cum > tl_cum[last])
            tl_cum[last] = cum;
        if ((uint64_t)active > tl_peak[last])
            tl_peak[last] = (uint64_t)active;
    } else {
        size_t slot = (tl_head + tl_len) % TIMELINE_MAX;
        if (tl_len == TIMELINE_MAX)
            tl_head = (tl_head + 1) % TIMELINE_MAX;
        else
            tl_len++;
        tl_ms[slot] = bucket_ms;
        tl_cum[slot] = cum;
        tl_peak[slot] = active > 0 ? (uint64_t)active : 0;
    }
    pthread_mutex_unlock(&tl_lock);
}

/* ---- connections and requests ---- */

typedef struct worker {
    uv_loop_t loop;
    uv_tcp_t listener;
    int fd;
    int index;
    pthread_t thread;
    uint64_t seq; /* request ids */
    char readbuf[64 * 1024];
    bool readbuf_busy;
} worker;

typedef enum { KIND_CHAT, KIND_COMPLETION } gen_kind;

/* One completion being generated on a connection. */
typedef struct gen {
    gen_kind kind;
    sl_mock_opts o;
    bool stream;
    bool include_usage;
    char *model_esc;   /* JSON-escaped requested model, owned */
    char *text;        /* the words' backing text, owned */
    sl_mock_words words;
    size_t prompt_words;
    size_t ntokens;
    size_t sent;       /* token chunks produced so far */
    bool finish_length;
    bool cut;          /* cut_after reached: close after the pending write */
    uint64_t t_first_ns; /* when token 0 is due */
    char id[64];
    long long created;
} gen;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    worker *w;
    int open_handles;
    sl_buf rbuf;          /* unparsed request bytes */
    sl_buf out;           /* response being built */
    sl_buf body;          /* decoded chunked body */
    int pending_writes;
    bool closing;
    bool busy;            /* a request is being answered */
    bool active_counted;  /* busy request counted in st_active */
    bool done;            /* all bytes of the current response are queued */
    bool keep_alive;
    bool sent_continue;
    gen *g;
} conn;

typedef struct write_req {
    uv_write_t req;
    conn *c;
    char *data;
} write_req;

static void conn_close(conn *c);
static void process_input(conn *c);
static void stream_pump(conn *c);

static void gen_free(gen *g)
{
    if (!g)
        return;
    sl_free(g->model_esc);
    sl_free(g->text);
    sl_mock_words_free(&g->words);
    sl_free(g);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    gen_free(c->g);
    sl_buf_free(&c->rbuf);
    sl_buf_free(&c->out);
    sl_buf_free(&c->body);
    sl_free(c);
}

static void request_end(conn *c)
{
    if (c->active_counted) {
        atomic_fetch_sub(&st_active, 1);
        c->active_counted = false;
    }
    gen_free(c->g);
    c->g = NULL;
    c->busy = false;
    c->done = false;
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    request_end(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Called when the response is fully queued and every write has finished. */
static void response_complete(conn *c)
{
    bool ka = c->keep_alive;
    request_end(c);
    if (!ka) {
        conn_close(c);
        return;
    }
    process_input(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    conn *c = wr->c;
    sl_free(wr->data);
    sl_free(wr);
    c->pending_writes--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->pending_writes > 0)
        return;
    if (c->g && c->g->cut) {
        conn_close(c); /* abrupt end: no terminating chunk, no [DONE] */
        return;
    }
    if (c->done) {
        response_complete(c);
        return;
    }
    if (c->g && c->g->stream)
        stream_pump(c);
}

/* Queues c->out as one write (ownership moves to the write request). */
static void flush_out(conn *c)
{
    if (c->out.len == 0 || c->closing)
        return;
    write_req *wr = sl_malloc(sizeof *wr);
    if (!wr) {
        conn_close(c);
        return;
    }
    size_t len;
    wr->data = sl_buf_take(&c->out, &len);
    wr->c = c;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    c->pending_writes++;
    int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        c->pending_writes--;
        sl_free(wr->data);
        sl_free(wr);
        conn_close(c);
    }
}

static const char *status_text(int s)
{
    switch (s) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return s < 400 ? "OK" : s < 500 ? "Client Error" : "Server Error";
    }
}

/* Appends a response head to c->out. content_length < 0 means chunked. */
static void put_head(conn *c, int status, const char *ctype, long long content_length,
                     int retry_after)
{
    sl_buf *o = &c->out;
    sl_buf_appendf(o, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, status_text(status), ctype);
    if (content_length >= 0)
        sl_buf_appendf(o, "Content-Length: %lld\r\n", content_length);
    else
        sl_buf_append_str(o, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
    if (retry_after >= 0)
        sl_buf_appendf(o, "Retry-After: %d\r\n", retry_after);
    if (!c->keep_alive)
        sl_buf_append_str(o, "Connection: close\r\n");
    sl_buf_append_str(o, "\r\n");
}

/* Queues a whole JSON response and marks the request done. */
static void send_json(conn *c, int status, const char *body, size_t len, int retry_after)
{
    put_head(c, status, "application/json", (long long)len, retry_after);
    sl_buf_append(&c->out, body, len);
    c->done = true;
    flush_out(c);
}

static const char *error_type(int status)
{
    switch (status) {
    case 400: case 404: case 405: case 413: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static void send_error(conn *c, int status, const char *msg, int retry_after)
{
    sl_buf b;
    sl_buf_init(&b, 16 * 1024);
    sl_buf_append_str(&b, "{\"error\":{\"message\":\"");
    sl_mock_json_escape(&b, msg, strlen(msg));
    sl_buf_appendf(&b, "\",\"type\":\"%s\",\"param\":null,\"code\":null}}", error_type(status));
    send_json(c, status, b.data, b.len, retry_after);
    sl_buf_free(&b);
}

/* ---- completions ---- */

static void put_usage(sl_buf *o, const gen *g)
{
    sl_buf_appendf(o, "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}",
                   g->prompt_words, g->ntokens, g->prompt_words + g->ntokens);
}

static void put_chunk_prefix(sl_buf *o, const gen *g)
{
    sl_buf_appendf(o, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":\"%s\",", g->id,
                   g->kind == KIND_CHAT ? "chat.completion.chunk" : "text_completion", g->created,
                   g->model_esc);
}

/* Appends one SSE event (payload in ev) as one HTTP chunk to c->out. */
static void put_event(conn *c, const sl_buf *ev)
{
    sl_buf_appendf(&c->out, "%zx\r\ndata: ", ev->len + 8);
    sl_buf_append(&c->out, ev->data, ev->len);
    sl_buf_append_str(&c->out, "\n\n\r\n");
}

static void put_token_event(conn *c, gen *g, size_t i, sl_buf *ev)
{
    sl_buf_reset(ev);
    put_chunk_prefix(ev, g);
    sl_str t = sl_mock_token(&g->words, i);
    if (g->kind == KIND_CHAT) {
        sl_buf_append_str(ev, i == 0 ? "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\""
                                     : "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    } else {
        sl_buf_append_str(ev, "\"choices\":[{\"index\":0,\"text\":\"");
    }
    if (i > 0)
        sl_buf_append_char(ev, ' ');
    sl_mock_json_escape(ev, t.p, t.n);
    sl_buf_append_str(ev, g->kind == KIND_CHAT ? "\"},\"logprobs\":null,\"finish_reason\":null}]}"
                                               : "\",\"logprobs\":null,\"finish_reason\":null}]}");
    put_event(c, ev);
}

static void put_stream_tail(conn *c, gen *g, sl_buf *ev)
{
    const char *fr = g->finish_length ? "length" : "stop";
    sl_buf_reset(ev);
    put_chunk_prefix(ev, g);
    if (g->kind == KIND_CHAT)
        sl_buf_appendf(ev, "\"choices\":[{\"index\":0,\"delta\":{%s},\"logprobs\":null,\"finish_reason\":\"%s\"}]}",
                       g->ntokens == 0 ? "\"role\":\"assistant\",\"content\":\"\"" : "", fr);
    else
        sl_buf_appendf(ev, "\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"%s\"}]}", fr);
    put_event(c, ev);
    if (g->include_usage) {
        sl_buf_reset(ev);
        put_chunk_prefix(ev, g);
        sl_buf_append_str(ev, "\"choices\":[],");
        put_usage(ev, g);
        sl_buf_append_char(ev, '}');
        put_event(c, ev);
    }
    sl_buf_reset(ev);
    sl_buf_append_str(ev, "[DONE]");
    put_event(c, ev);
    sl_buf_append_str(&c->out, "0\r\n\r\n");
}

static void on_timer(uv_timer_t *t);

/* Produces the streaming chunks that are due (all of them when not paced, up
 * to STREAM_BATCH bytes per write) and schedules the next wake-up. */
static void stream_pump(conn *c)
{
    gen *g = c->g;
    if (c->closing || !g || c->pending_writes > 0 || c->done)
        return;
    uint64_t now = uv_hrtime();
    if (now < g->t_first_ns) {
        uv_timer_start(&c->timer, on_timer, (g->t_first_ns - now + 999999) / 1000000, 0);
        return;
    }
    size_t due = g->ntokens;
    if (g->o.tps > 0) {
        double elapsed_s = (double)(now - g->t_first_ns) / 1e9;
        double d = elapsed_s * g->o.tps + 1.0;
        if (d < (double)due)
            due = (size_t)d;
    }
    size_t limit = g->o.cut_after >= 0 ? (size_t)g->o.cut_after : SIZE_MAX;
    sl_buf ev;
    sl_buf_init(&ev, MAX_BODY);
    while (g->sent < due && g->sent < limit && c->out.len < STREAM_BATCH)
        put_token_event(c, g, g->sent++, &ev);
    if (g->sent >= limit && limit != SIZE_MAX) {
        g->cut = true;
        atomic_fetch_add(&st_cuts, 1);
    } else if (g->sent == g->ntokens) {
        put_stream_tail(c, g, &ev);
        c->done = true;
    }
    sl_buf_free(&ev);
    if (c->out.len > 0) {
        flush_out(c);
        return;
    }
    if (g->cut) {
        conn_close(c);
        return;
    }
    /* nothing due yet (only possible when paced): sleep until the next token is */
    if (g->o.tps <= 0)
        return;
    double next_s = (double)g->sent / g->o.tps;
    uint64_t next_ns = g->t_first_ns + (uint64_t)(next_s * 1e9);
    uint64_t wait_ms = next_ns > now ? (next_ns - now + 999999) / 1000000 : 0;
    uv_timer_start(&c->timer, on_timer, wait_ms, 0);
}

static void send_completion_body(conn *c)
{
    gen *g = c->g;
    sl_buf b;
    sl_buf_init(&b, (size_t)MAX_BODY * 4);
    sl_buf_appendf(&b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":\"%s\",\"choices\":[{\"index\":0,",
                   g->id, g->kind == KIND_CHAT ? "chat.completion" : "text_completion", g->created,
                   g->model_esc);
    sl_buf_append_str(&b, g->kind == KIND_CHAT ? "\"message\":{\"role\":\"assistant\",\"content\":\"" : "\"text\":\"");
    sl_buf reply;
    sl_buf_init(&reply, (size_t)MAX_BODY * 2);
    int rc = sl_mock_reply_text(&g->words, g->ntokens, &reply);
    if (rc == 0)
        rc = sl_mock_json_escape(&b, reply.data ? reply.data : "", reply.len);
    sl_buf_free(&reply);
    if (rc < 0) {
        sl_buf_free(&b);
        send_error(c, 400, "requested completion is too large", -1);
        return;
    }
    sl_buf_appendf(&b, "\"%s,\"logprobs\":null,\"finish_reason\":\"%s\"}],", g->kind == KIND_CHAT ? "}" : "",
                   g->finish_length ? "length" : "stop");
    put_usage(&b, g);
    sl_buf_append_char(&b, '}');
    send_json(c, 200, b.data, b.len, -1);
    sl_buf_free(&b);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->closing || !c->g)
        return;
    if (c->g->stream)
        stream_pump(c);
    else
        send_completion_body(c);
}

static void start_generation(conn *c)
{
    gen *g = c->g;
    snprintf(g->id, sizeof g->id, "%s-mock-%d-%" PRIu64, g->kind == KIND_CHAT ? "chatcmpl" : "cmpl",
             c->w->index, ++c->w->seq);
    g->created = (long long)time(NULL);
    g->t_first_ns = uv_hrtime() + (uint64_t)g->o.ttft_ms * 1000000;
    if (!g->stream) {
        uint64_t delay_ms = (uint64_t)g->o.ttft_ms;
        if (g->o.tps > 0 && g->ntokens > 1)
            delay_ms += (uint64_t)((double)(g->ntokens - 1) * 1000.0 / g->o.tps);
        if (delay_ms == 0)
            send_completion_body(c);
        else
            uv_timer_start(&c->timer, on_timer, delay_ms, 0);
        return;
    }
    put_head(c, 200, "text/event-stream", -1, -1);
    if (g->o.cut_after == 0) {
        g->cut = true;
        atomic_fetch_add(&st_cuts, 1);
    }
    flush_out(c); /* the head goes out at once; tokens follow on write completion */
}

/* Decides injected faults. Returns true when the request was answered (or
 * deliberately left hanging) and needs no further handling. */
static bool inject_faults(conn *c, const sl_mock_opts *o)
{
    int status = o->status;
    if (status < 0 && g_cfg.error_rate > 0 && sl_rand_unit() < g_cfg.error_rate)
        status = g_cfg.error_status;
    if (status >= 0) {
        atomic_fetch_add(&st_errors, 1);
        char msg[96];
        snprintf(msg, sizeof msg, "mockllm injected error (status %d)", status);
        send_error(c, status, msg, o->retry_after);
        return true;
    }
    if (o->hang || (g_cfg.hang_rate > 0 && sl_rand_unit() < g_cfg.hang_rate)) {
        atomic_fetch_add(&st_hangs, 1);
        return true; /* never answered; the connection stays until the peer leaves */
    }
    return false;
}

static void handle_generate(conn *c, gen_kind kind, json_t *root)
{
    char err[256] = "";
    sl_mock_opts o = g_cfg.defaults;
    if (sl_mock_opts_apply(&o, json_object_get(root, "mock"), err, sizeof err) < 0) {
        send_error(c, 400, err, -1);
        return;
    }
    if (inject_faults(c, &o))
        return;

    sl_buf text;
    sl_buf_init(&text, MAX_BODY);
    size_t pw = 0;
    int rc;
    if (kind == KIND_CHAT) {
        const json_t *msgs = json_object_get(root, "messages");
        if (!msgs) {
            sl_buf_free(&text);
            send_error(c, 400, "missing required field 'messages'", -1);
            return;
        }
        rc = sl_mock_extract_prompt(msgs, NULL, &text, &pw, err, sizeof err);
    } else {
        rc = sl_mock_extract_prompt(NULL, json_object_get(root, "prompt"), &text, &pw, err, sizeof err);
    }
    if (rc < 0) {
        sl_buf_free(&text);
        send_error(c, 400, err, -1);
        return;
    }
    gen *g = sl_calloc(1, sizeof *g);
    if (!g) {
        sl_buf_free(&text);
        send_error(c, 500, "out of memory", -1);
        return;
    }
    c->g = g;
    g->kind = kind;
    g->o = o;
    g->prompt_words = pw;
    g->text = sl_buf_take(&text, NULL);
    sl_buf_free(&text);
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!model)
        model = g_cfg.model;
    sl_buf m;
    sl_buf_init(&m, 64 * 1024);
    if (sl_mock_json_escape(&m, model, strlen(model)) < 0 || sl_buf_append_char(&m, '\0') < 0) {
        sl_buf_free(&m);
        send_error(c, 400, "'model' is too long", -1);
        return;
    }
    g->model_esc = sl_buf_take(&m, NULL);
    if (sl_mock_words_split(g->text ? g->text : "", g->text ? strlen(g->text) : 0, MAX_WORDS,
                            &g->words) < 0) {
        send_error(c, 500, "out of memory", -1);
        return;
    }
    g->stream = json_is_true(json_object_get(root, "stream"));
    g->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
    g->ntokens = (size_t)o.tokens;
    /* OpenAI semantics: "stop" when the reply ends by itself (its configured
     * length), "length" when the request's max_tokens cut it short */
    g->finish_length = false;
    const char *caps[] = {"max_tokens", "max_completion_tokens"};
    for (size_t i = 0; i < SL_ARRAY_LEN(caps); i++) {
        const json_t *v = json_object_get(root, caps[i]);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(err, sizeof err, "'%s' must be a non-negative integer", caps[i]);
            send_error(c, 400, err, -1);
            return;
        }
        if ((uint64_t)json_integer_value(v) < g->ntokens) {
            g->ntokens = (size_t)json_integer_value(v);
            g->finish_length = true; /* capped below --tokens by the request */
        }
    }
    start_generation(c);
}

/* Returns the embedding input number i's bytes, or an error. Token arrays are
 * hashed as their little-endian int64 values. */
static void handle_embeddings(conn *c, json_t *root)
{
    char err[256] = "";
    sl_mock_opts o = g_cfg.defaults;
    if (sl_mock_opts_apply(&o, json_object_get(root, "mock"), err, sizeof err) < 0) {
        send_error(c, 400, err, -1);
        return;
    }
    if (inject_faults(c, &o))
        return;
    const json_t *input = json_object_get(root, "input");
    /* Normalize to a list of items, each a string or an array of ints. */
    json_t *items = NULL;
    if (json_is_string(input)) {
        items = json_pack("[O]", input);
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        if (json_is_integer(json_array_get(input, 0)))
            items = json_pack("[O]", input);
        else
            items = json_incref((json_t *)input);
    }
    if (!items) {
        send_error(c, 400, "'input' must be a non-empty string, array of strings, or token array", -1);
        return;
    }
    size_t n = json_array_size(items);
    if (n > MAX_EMBED_INPUTS) {
        json_decref(items);
        send_error(c, 400, "too many inputs in 'input'", -1);
        return;
    }
    const char *fmt = json_string_value(json_object_get(root, "encoding_format"));
    bool b64 = fmt && !strcmp(fmt, "base64");
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!model)
        model = g_cfg.model;
    int dim = g_cfg.embedding_dim;
    float *v = sl_calloc((size_t)dim, sizeof(float));
    int64_t *toks = NULL;
    sl_buf b;
    sl_buf_init(&b, (size_t)MAX_BODY * 4);
    sl_buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
    size_t ptoks = 0;
    for (size_t i = 0; i < n && v; i++) {
        const json_t *it = json_array_get(items, i);
        if (json_is_string(it)) {
            sl_mock_embedding(json_string_value(it), json_string_length(it), dim, v);
            ptoks += sl_mock_count_words(json_string_value(it), json_string_length(it));
        } else if (json_is_array(it)) {
            size_t k = json_array_size(it);
            sl_free(toks);
            toks = sl_calloc(k ? k : 1, sizeof(int64_t));
            if (!toks)
                break;
            for (size_t j = 0; j < k; j++) {
                const json_t *t = json_array_get(it, j);
                if (!json_is_integer(t)) {
                    snprintf(err, sizeof err, "input[%zu][%zu] must be an integer token id", i, j);
                    break;
                }
                toks[j] = (int64_t)json_integer_value(t);
            }
            if (err[0])
                break;
            sl_mock_embedding(toks, k * sizeof(int64_t), dim, v);
            ptoks += k;
        } else {
            snprintf(err, sizeof err, "input[%zu] must be a string or an array of token ids", i);
            break;
        }
        sl_buf_appendf(&b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (b64) {
            sl_buf_append_char(&b, '"');
            sl_mock_base64(&b, v, (size_t)dim * sizeof(float)); /* little-endian float32 */
            sl_buf_append_char(&b, '"');
        } else {
            sl_buf_append_char(&b, '[');
            for (int j = 0; j < dim; j++)
                sl_buf_appendf(&b, "%s%.9g", j ? "," : "", (double)v[j]);
            sl_buf_append_char(&b, ']');
        }
        sl_buf_append_char(&b, '}');
    }
    if (!v && !err[0])
        snprintf(err, sizeof err, "out of memory");
    if (err[0]) {
        send_error(c, 400, err, -1);
    } else {
        sl_buf_append_str(&b, "],\"model\":\"");
        sl_mock_json_escape(&b, model, strlen(model));
        sl_buf_appendf(&b, "\",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}", ptoks, ptoks);
        send_json(c, 200, b.data, b.len, -1);
    }
    sl_buf_free(&b);
    sl_free(v);
    sl_free(toks);
    json_decref(items);
}

static void put_model(sl_buf *b, const char *id, size_t n)
{
    sl_buf_append_str(b, "{\"id\":\"");
    sl_mock_json_escape(b, id, n);
    sl_buf_append_str(b, "\",\"object\":\"model\",\"created\":1700000000,\"owned_by\":\"mockllm\"}");
}

static void handle_stats(conn *c)
{
    sl_buf b;
    sl_buf_init(&b, 4 * 1024 * 1024);
    sl_buf_appendf(&b, "{\"requests\":%lu,\"by_path\":{", atomic_load(&st_requests));
    for (int i = 0; i < PATH_COUNT; i++)
        sl_buf_appendf(&b, "%s\"%s\":%lu", i ? "," : "", k_paths[i], atomic_load(&st_by_path[i]));
    sl_buf_appendf(&b, "},\"connections\":%lu,\"active_requests\":%ld,\"errors_injected\":%lu,"
                       "\"hangs_injected\":%lu,\"cuts_injected\":%lu,\"timeline\":[",
                   atomic_load(&st_connections), atomic_load(&st_active), atomic_load(&st_errors),
                   atomic_load(&st_hangs), atomic_load(&st_cuts));
    pthread_mutex_lock(&tl_lock);
    for (size_t i = 0; i < tl_len; i++) {
        size_t k = (tl_head + i) % TIMELINE_MAX;
        sl_buf_appendf(&b, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", i ? "," : "", tl_ms[k], tl_cum[k],
                       tl_peak[k]);
    }
    pthread_mutex_unlock(&tl_lock);
    sl_buf_append_str(&b, "]}");
    send_json(c, 200, b.data, b.len, -1);
    sl_buf_free(&b);
}

/* Routes one complete request. body may be empty. */
static void handle_request(conn *c, const sl_mock_http_req *r, const char *body, size_t blen)
{
    bool get = sl_str_eq_c(r->method, "GET");
    bool post = sl_str_eq_c(r->method, "POST");
    sl_str path = r->path;
    if (path.n > 1 && path.p[path.n - 1] == '/')
        path.n--;

    if (sl_str_eq_c(path, "/health")) {
        static const char ok[] = "{\"status\":\"ok\"}";
        send_json(c, 200, ok, sizeof ok - 1, -1);
        return;
    }
    if (sl_str_eq_c(path, "/stats")) {
        handle_stats(c);
        return;
    }
    if (!sl_str_starts_with(path, "/v1/")) {
        send_error(c, 404, "unknown path", -1);
        return;
    }
    int kind = PATH_OTHER;
    if (sl_str_eq_c(path, "/v1/chat/completions"))
        kind = PATH_CHAT;
    else if (sl_str_eq_c(path, "/v1/completions"))
        kind = PATH_COMPLETIONS;
    else if (sl_str_eq_c(path, "/v1/embeddings"))
        kind = PATH_EMBEDDINGS;
    else if (sl_str_eq_c(path, "/v1/models") || sl_str_starts_with(path, "/v1/models/"))
        kind = PATH_MODELS;
    c->active_counted = true;
    stats_request(kind, atomic_fetch_add(&st_active, 1) + 1);

    if (kind == PATH_MODELS) {
        if (!get) {
            send_error(c, 405, "method not allowed; use GET", -1);
            return;
        }
        sl_buf b;
        sl_buf_init(&b, 128 * 1024);
        if (path.n > strlen("/v1/models/")) {
            size_t off = strlen("/v1/models/");
            put_model(&b, path.p + off, path.n - off);
        } else {
            sl_buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
            put_model(&b, g_cfg.model, strlen(g_cfg.model));
            sl_buf_append_str(&b, "]}");
        }
        send_json(c, 200, b.data, b.len, -1);
        sl_buf_free(&b);
        return;
    }
    if (kind == PATH_OTHER) {
        send_error(c, 404, "unknown path", -1);
        return;
    }
    if (!post) {
        send_error(c, 405, "method not allowed; use POST", -1);
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, blen, 0, &jerr);
    if (!root || !json_is_object(root)) {
        char msg[300];
        if (root)
            snprintf(msg, sizeof msg, "request body must be a JSON object");
        else
            snprintf(msg, sizeof msg, "invalid JSON body at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        json_decref(root);
        send_error(c, 400, msg, -1);
        return;
    }
    if (kind == PATH_EMBEDDINGS)
        handle_embeddings(c, root);
    else
        handle_generate(c, kind == PATH_CHAT ? KIND_CHAT : KIND_COMPLETION, root);
    json_decref(root);
}

/* Parses and answers buffered requests, one at a time. */
static void process_input(conn *c)
{
    while (!c->closing && !c->busy && c->rbuf.len > 0) {
        sl_mock_http_req r;
        int hl = sl_mock_http_parse(c->rbuf.data, c->rbuf.len, MAX_HEAD, &r);
        if (hl == 0)
            return;
        if (hl < 0) {
            c->keep_alive = false;
            c->busy = true;
            send_error(c, hl == SL_ETOOBIG ? 431 : 400,
                       hl == SL_ETOOBIG ? "request head too large" : "malformed HTTP request", -1);
            return;
        }
        const char *body = c->rbuf.data + hl;
        size_t avail = c->rbuf.len - (size_t)hl;
        size_t blen = 0, total = 0;
        if (r.chunked) {
            size_t used = 0;
            int rc = sl_mock_chunked_decode(body, avail, &c->body, &used);
            if (rc < 0) {
                c->keep_alive = false;
                c->busy = true;
                send_error(c, rc == SL_ETOOBIG ? 413 : 400,
                           rc == SL_ETOOBIG ? "request body too large" : "malformed chunked body", -1);
                return;
            }
            if (rc == 0)
                goto need_more;
            body = c->body.data ? c->body.data : "";
            blen = c->body.len;
            total = (size_t)hl + used;
        } else {
            int64_t cl = r.content_length < 0 ? 0 : r.content_length;
            if (cl > MAX_BODY) {
                c->keep_alive = false;
                c->busy = true;
                send_error(c, 413, "request body too large", -1);
                return;
            }
            if (avail < (size_t)cl)
                goto need_more;
            blen = (size_t)cl;
            total = (size_t)hl + blen;
        }
        c->busy = true;
        c->done = false;
        c->keep_alive = r.keep_alive;
        c->sent_continue = false;
        handle_request(c, &r, body, blen);
        if (!c->closing)
            sl_buf_consume(&c->rbuf, total);
        continue;
    need_more:
        if (r.expect_continue && !c->sent_continue) {
            c->sent_continue = true;
            sl_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            flush_out(c);
        }
        return;
    }
}

/* The read buffer of a worker is used by one read at a time (libuv reads
 * synchronously into it and calls on_read before the next allocation). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    *buf = uv_buf_init(c->w->readbuf, sizeof c->w->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (nread < 0) {
        conn_close(c); /* EOF or error: a request in progress is abandoned */
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (sl_buf_append(&c->rbuf, buf->base, (size_t)nread) < 0) {
        if (c->busy) {
            conn_close(c);
        } else {
            c->keep_alive = false;
            c->busy = true;
            send_error(c, 413, "request too large", -1);
        }
        return;
    }
    process_input(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    worker *w = server->data;
    if (status < 0)
        return;
    conn *c = sl_calloc(1, sizeof *c);
    if (!c)
        return;
    c->w = w;
    sl_buf_init(&c->rbuf, MAX_HEAD + MAX_BODY + 64 * 1024);
    sl_buf_init(&c->out, (size_t)MAX_BODY * 4);
    sl_buf_init(&c->body, MAX_BODY);
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        return;
    }
    atomic_fetch_add(&st_connections, 1);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- startup ---- */

static int open_listener(const struct sockaddr *sa, int *fd_out)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, sa, len) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *fd_out = fd;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mockllm [--host H] [--port N] [--workers N] [--ttft-ms N] [--tps N]\n"
            "               [--tokens N] [--error-rate F] [--error-status S] [--hang-rate F]\n"
            "               [--cut-after N] [--crash-after N] [--retry-after S]\n"
            "               [--embedding-dim N] [--model NAME]\n");
}

static int parse_num(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "mockllm: %s must be a number in [%g, %g], got '%s'\n", name, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", 1, 0, 'H'},          {"port", 1, 0, 'p'},        {"workers", 1, 0, 'w'},
        {"ttft-ms", 1, 0, 't'},       {"tps", 1, 0, 's'},         {"tokens", 1, 0, 'n'},
        {"error-rate", 1, 0, 'e'},    {"error-status", 1, 0, 'S'}, {"hang-rate", 1, 0, 'g'},
        {"cut-after", 1, 0, 'c'},     {"crash-after", 1, 0, 'C'}, {"retry-after", 1, 0, 'r'},
        {"embedding-dim", 1, 0, 'd'}, {"model", 1, 0, 'm'},       {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *a = optarg;
        int rc = 0;
        switch (ch) {
        case 'H': g_cfg.host = a; break;
        case 'p': if (!(rc = parse_num("--port", a, 0, 65535, &v))) g_cfg.port = (int)v; break;
        case 'w': if (!(rc = parse_num("--workers", a, 1, 256, &v))) g_cfg.workers = (int)v; break;
        case 't': if (!(rc = parse_num("--ttft-ms", a, 0, 3600000, &v))) g_cfg.defaults.ttft_ms = (int)v; break;
        case 's': if (!(rc = parse_num("--tps", a, 0, 1e9, &v))) g_cfg.defaults.tps = v; break;
        case 'n': if (!(rc = parse_num("--tokens", a, 0, 1000000, &v))) g_cfg.defaults.tokens = (int)v; break;
        case 'e': rc = parse_num("--error-rate", a, 0, 1, &g_cfg.error_rate); break;
        case 'S': if (!(rc = parse_num("--error-status", a, 100, 599, &v))) g_cfg.error_status = (int)v; break;
        case 'g': rc = parse_num("--hang-rate", a, 0, 1, &g_cfg.hang_rate); break;
        case 'c': if (!(rc = parse_num("--cut-after", a, 0, 1000000, &v))) g_cfg.defaults.cut_after = (int)v; break;
        case 'C': if (!(rc = parse_num("--crash-after", a, 1, 1e15, &v))) g_cfg.crash_after = (long)v; break;
        case 'r': if (!(rc = parse_num("--retry-after", a, 0, 86400, &v))) g_cfg.defaults.retry_after = (int)v; break;
        case 'd': if (!(rc = parse_num("--embedding-dim", a, 1, 65536, &v))) g_cfg.embedding_dim = (int)v; break;
        case 'm': g_cfg.model = a; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "mockllm: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

static void on_stop_signal(int sig)
{
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    g_start_ns = uv_hrtime();

    /* Signals: SIGPIPE ignored (write errors come back as EPIPE); SIGTERM and
     * SIGINT blocked in every thread and taken synchronously by main. */
    signal(SIGPIPE, SIG_IGN);
    /* A thread started before main (the sanitizers' background thread) does
     * not have the signals blocked: a handler makes delivery there exit 0
     * just as sigwait below does. stdout was flushed after each line. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(g_cfg.host, ':') ? uv_ip6_addr(g_cfg.host, g_cfg.port, (struct sockaddr_in6 *)&ss)
                                : uv_ip4_addr(g_cfg.host, g_cfg.port, (struct sockaddr_in *)&ss)) {
        fprintf(stderr, "mockllm: --host must be a numeric IPv4 or IPv6 address, got '%s'\n", g_cfg.host);
        return 2;
    }
    worker *ws = sl_calloc((size_t)g_cfg.workers, sizeof *ws);
    if (!ws)
        return 1;
    int port = g_cfg.port;
    for (int i = 0; i < g_cfg.workers; i++) {
        worker *w = &ws[i];
        w->index = i;
        if (ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        int rc = open_listener((struct sockaddr *)&ss, &w->fd);
        if (rc < 0) {
            fprintf(stderr, "mockllm: cannot listen on %s:%d: %s\n", g_cfg.host, port, strerror(-rc));
            return 1;
        }
        if (i == 0) {
            /* with --port 0 the first socket picks the port; the rest share it */
            struct sockaddr_storage bound;
            socklen_t bl = sizeof bound;
            getsockname(w->fd, (struct sockaddr *)&bound, &bl);
            port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);
        }
        uv_loop_init(&w->loop);
        uv_tcp_init(&w->loop, &w->listener);
        w->listener.data = w;
        if (uv_tcp_open(&w->listener, w->fd) < 0 ||
            uv_listen((uv_stream_t *)&w->listener, 4096, on_connection) < 0) {
            fprintf(stderr, "mockllm: cannot start listener %d\n", i);
            return 1;
        }
    }
    for (int i = 0; i < g_cfg.workers; i++) {
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "mockllm: cannot start worker thread %d\n", i);
            return 1;
        }
    }
    printf("mockllm listening on %d\n", port);
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);
    fflush(stdout);
    fflush(stderr);
    _exit(0); /* workers hold connections mid-flight; nothing needs orderly teardown */
}
