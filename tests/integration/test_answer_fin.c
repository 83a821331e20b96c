/*
 * Integration: an answer after which the server closes (HTTP/1.0, the stock
 * client's every request) leaves in the same TCP segment as the FIN
 * (issue 13: conn.closing, MSG_MORE on the last writes). Before, the
 * answer and the FIN were two segments, each waking the client, on a path
 * where the server's CPU per message is mostly the kernel's work on
 * loopback segments.
 *
 * Seen from the client, with TCP_INFO's count of segments received: the
 * SYN-ACK, the ACK of the request, and the answer carrying the FIN: 3
 * (4 before: the FIN came alone). Plain connections only (TLS adds its own
 * records and close_notify).
 */
#include "harness.h"

#include <stddef.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_segs_in (glibc's is older) */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The segments c's socket received so far (TCP_INFO, Linux 4.2 on). */
static unsigned segs_in(h_conn_t *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    assert_int_equal(getsockopt(h_fd(c), IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    if (len < offsetof(struct tcp_info, tcpi_segs_in) + sizeof ti.tcpi_segs_in)
        skip(); /* a kernel too old to count them */
    return ti.tcpi_segs_in;
}

/* c's whole answer has been read (the connection closes after it): its
 * FIN came with it, not in a segment of its own. who: the client, named
 * in the failure. */
static void assert_fin_with_answer(h_conn_t *c, const char *who)
{
    h_expect_eof(c, H_TIMEOUT_MS);
    unsigned n = segs_in(c);
    if (n > 3)
        fail_msg("%s received %u segments (SYN-ACK, ACK, answer+FIN: 3): "
                 "the FIN came apart from the answer", who, n);
}

/* A stock request answered at once (on the accepting thread). */
static void test_answer_and_fin_one_segment(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip();
    h_server_t srv;
    h_server_start(&srv, NULL);
    h_conn_t *c = h_connect(&srv);
    h_send_str(c, "OPTIONS /sign_in HTTP/1.0\r\n\r\n");
    h_resp_t *r = h_read(c);
    assert_int_equal(r->status, 200);
    h_resp_free(r);
    assert_fin_with_answer(c, "the client");
    h_close(c);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

/* A parked /wait answered by a relayed message, then closed. */
static void test_parked_wait_answer_and_fin_one_segment(void **state)
{
    (void)state;
    if (h_tls_mode())
        skip();
    h_server_t srv;
    h_server_start(&srv, NULL);
    uint64_t a = h_sign_in(&srv, "alice");
    uint64_t b = h_sign_in(&srv, "bob");
    h_resp_t *join = h_wait_once(&srv, a); /* bob's join, queued for alice */
    h_resp_free(join);
    h_conn_t *c = h_connect(&srv);
    h_sendf(c, "GET /wait?peer_id=%llu HTTP/1.0\r\n\r\n", (unsigned long long)b);
    h_wait_parked(&srv, 1, H_TIMEOUT_MS);
    h_send_ok(&srv, a, b, "hello", 5, "text/plain");
    h_resp_t *r = h_read(c);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 5);
    h_resp_free(r);
    assert_fin_with_answer(c, "the waiting client");
    h_close(c);
    assert_int_equal(h_server_stop(&srv), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_answer_and_fin_one_segment),
        H_TEST(test_parked_wait_answer_and_fin_one_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
