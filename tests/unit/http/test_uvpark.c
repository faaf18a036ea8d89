/* Read parking (src/http/uvpark.c): a stopped stream's callbacks never run,
 * nothing that arrives while it is stopped is lost, and a stop/start pair with
 * nothing in between costs no call into libuv. Real sockets, one loop. */
#include "test.h"
#include "http/uvpark.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static uv_tcp_t listener, srv;
static int cli = -1;
static char got[64];
static size_t ngot;
static int eofs, errs, closed;
static char slab[256];

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    (void)sz;
    b->base = slab;
    b->len = sizeof slab;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    if (n > 0) {
        if (ngot + (size_t)n <= sizeof got) {
            memcpy(got + ngot, b->base, (size_t)n);
            ngot += (size_t)n;
        }
    } else if (n == UV_EOF) {
        eofs++;
    } else if (n < 0) {
        errs++;
    }
}

static void on_close(uv_handle_t *h)
{
    (void)h;
    closed++;
}

static void spin(int turns)
{
    for (int i = 0; i < turns; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    usleep(2000);
    for (int i = 0; i < turns; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

static void on_conn(uv_stream_t *l, int status) { (void)l, (void)status; }

/* A loop, a listener, a connected client socket and the accepted server stream. */
static void setup(void)
{
    ngot = 0;
    eofs = errs = closed = 0;
    EXPECT_EQ_INT(uv_loop_init(&loop), 0);
    EXPECT_EQ_INT(uv_tcp_init(&loop, &listener), 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    EXPECT_EQ_INT(uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0), 0);
    EXPECT_EQ_INT(uv_listen((uv_stream_t *)&listener, 8, on_conn), 0);
    int alen = sizeof a;
    uv_tcp_getsockname(&listener, (struct sockaddr *)&a, &alen);
    cli = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT(cli >= 0);
    EXPECT_EQ_INT(connect(cli, (struct sockaddr *)&a, sizeof a), 0);
    spin(2); /* the listener's callback runs; the connection waits in the backlog */
    EXPECT_EQ_INT(uv_tcp_init(&loop, &srv), 0);
    EXPECT_EQ_INT(uv_accept((uv_stream_t *)&listener, (uv_stream_t *)&srv), 0);
}

static void teardown(void)
{
    if (cli >= 0)
        close(cli);
    cli = -1;
    if (!uv_is_closing((uv_handle_t *)&srv))
        uv_close((uv_handle_t *)&srv, on_close);
    uv_close((uv_handle_t *)&listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_EQ_INT(uv_loop_close(&loop), 0);
}

static void send_str(const char *s) { EXPECT_EQ_INT(write(cli, s, strlen(s)), (long long)strlen(s)); }

static void test_resume_without_libuv(void)
{
    sl_uvpark_stats s0, s1;
    setup();
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    send_str("ab");
    spin(4);
    EXPECT_EQ_UINT(ngot, 2);
    sl_uvpark_stats_get(&s0);
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&srv), 0);
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&srv), 0); /* a second stop changes nothing */
    spin(4);                                              /* nothing arrives: nothing happens */
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    sl_uvpark_stats_get(&s1);
    EXPECT_EQ_UINT(s1.parked - s0.parked, 1);
    EXPECT_EQ_UINT(s1.resumed - s0.resumed, 1);
    EXPECT_EQ_UINT(s1.woken - s0.woken, 0);
    /* the stream reads as before */
    send_str("cd");
    spin(4);
    EXPECT_EQ_UINT(ngot, 4);
    EXPECT(memcmp(got, "abcd", 4) == 0);
    /* a start while reading is libuv's answer, unchanged */
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), UV_EALREADY);
    teardown();
}

static void test_bytes_while_stopped_wait(void)
{
    sl_uvpark_stats s0, s1;
    setup();
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    send_str("x");
    spin(4);
    EXPECT_EQ_UINT(ngot, 1);
    sl_uvpark_stats_get(&s0);
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&srv), 0);
    send_str("yz");
    spin(4);
    EXPECT_EQ_UINT(ngot, 1); /* not delivered while stopped */
    EXPECT_EQ_INT(errs, 0);
    sl_uvpark_stats_get(&s1);
    EXPECT_EQ_UINT(s1.woken - s0.woken, 1);
    EXPECT(!uv_is_active((uv_handle_t *)&srv)); /* stopped for real now */
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    spin(4);
    EXPECT_EQ_UINT(ngot, 3); /* and nothing was lost */
    EXPECT(memcmp(got, "xyz", 3) == 0);
    teardown();
}

static void test_eof_while_stopped(void)
{
    setup();
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&srv), 0);
    send_str("q");
    close(cli);
    cli = -1;
    spin(4);
    EXPECT_EQ_UINT(ngot, 0);
    EXPECT_EQ_INT(eofs, 0);
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    spin(4);
    EXPECT_EQ_UINT(ngot, 1);
    EXPECT_EQ_INT(eofs, 1);
    teardown();
}

static void test_close_while_stopped(void)
{
    setup();
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), 0);
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&srv), 0);
    uv_close((uv_handle_t *)&srv, on_close);
    EXPECT(srv.read_cb == NULL); /* closing stopped it for real */
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&srv), 0);
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&srv, on_alloc, on_read), UV_EINVAL);
    send_str("late");
    teardown(); /* the loop ends: the parked stream holds nothing open */
    EXPECT_EQ_INT(closed, 1);
    EXPECT_EQ_UINT(ngot, 0);
}

static void test_pipes_go_to_libuv(void)
{
    int sv[2];
    sl_uvpark_stats s0, s1;
    ngot = 0;
    EXPECT_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    EXPECT_EQ_INT(uv_loop_init(&loop), 0);
    uv_pipe_t p;
    EXPECT_EQ_INT(uv_pipe_init(&loop, &p, 0), 0);
    EXPECT_EQ_INT(uv_pipe_open(&p, sv[0]), 0);
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&p, on_alloc, on_read), 0);
    sl_uvpark_stats_get(&s0);
    EXPECT_EQ_INT(uv_read_stop((uv_stream_t *)&p), 0);
    sl_uvpark_stats_get(&s1);
    EXPECT_EQ_UINT(s1.parked - s0.parked, 0);
    EXPECT(!uv_is_active((uv_handle_t *)&p));
    EXPECT_EQ_INT(write(sv[1], "p", 1), 1);
    EXPECT_EQ_INT(uv_read_start((uv_stream_t *)&p, on_alloc, on_read), 0);
    spin(4);
    EXPECT_EQ_UINT(ngot, 1);
    uv_close((uv_handle_t *)&p, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_EQ_INT(uv_loop_close(&loop), 0);
    close(sv[1]);
}

int main(void)
{
    sl_uvpark_init();
    RUN(test_resume_without_libuv);
    RUN(test_bytes_while_stopped_wait);
    RUN(test_eof_while_stopped);
    RUN(test_close_while_stopped);
    RUN(test_pipes_go_to_libuv);
    return TEST_REPORT();
}
