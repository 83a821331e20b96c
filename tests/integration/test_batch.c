/*
 * Batched waits (X-Pcsig-Batch: 1): every queued item in one answer, in
 * order, in the documented framing; stock clients unchanged.
 */
#include "harness.h"
#include "strlit.h"

#include <stdio.h>
#include <stdlib.h>

struct record {
    uint64_t pragma;
    char ctype[64];
    const char *body;
    size_t len;
};

/* Parse a batch body strictly into recs; returns the record count. */
static size_t parse_batch(const h_resp_t *r, struct record *recs, size_t max)
{
    H_ASSERT_HDR(r, "Content-Type", "application/x-pcsig-batch");
    const char *p = r->body, *end = r->body + r->body_len;
    size_t n = 0;
    while (p < end) {
        assert_true(n < max);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        unsigned long long pragma, ctlen, blen;
        char tail;
        char line[96];
        assert_true((size_t)(nl - p) < sizeof line);
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = '\0';
        assert_int_equal(sscanf(line, "%llu %llu %llu%c", &pragma, &ctlen, &blen, &tail), 3);
        p = nl + 1;
        assert_true(ctlen < sizeof recs[n].ctype && (size_t)(end - p) >= ctlen + blen);
        recs[n].pragma = pragma;
        memcpy(recs[n].ctype, p, ctlen);
        recs[n].ctype[ctlen] = '\0';
        recs[n].body = p + ctlen;
        recs[n].len = blen;
        p += ctlen + blen;
        n++;
    }
    assert_int_equal(h_hdr_num(r, "X-Pcsig-Batch-Count"), (long long)n);
    return n;
}

static h_resp_t *batch_wait(const h_server_t *s, uint64_t id)
{
    char req[128];
    snprintf(req, sizeof req, "GET /wait?peer_id=%llu HTTP/1.0\r\nX-Pcsig-Batch: 1\r\n\r\n",
             (unsigned long long)id);
    return h_request_str(s, req);
}

static void test_joins_in_one_answer(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, NULL);
    enum { N = 20 };
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", i + 1);
        assert_int_equal(h_sign_in(&s, name), (uint64_t)i + 1);
    }
    h_send_ok(&s, 2, 1, "hello", 5, "text/x");
    h_send_ok(&s, 3, 1, "raw", 3, NULL);
    h_resp_t *r = batch_wait(&s, 1);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_PRAGMA(r, 1);
    struct record rec[64];
    size_t n = parse_batch(r, rec, 64);
    assert_int_equal(n, N - 1 + 2);
    for (int i = 0; i < N - 1; i++) {
        char want[32];
        snprintf(want, sizeof want, "m%d,%d,1\n", i + 2, i + 2);
        assert_int_equal(rec[i].pragma, 1);
        assert_string_equal(rec[i].ctype, "text/plain");
        assert_int_equal(rec[i].len, strlen(want));
        assert_memory_equal(rec[i].body, want, rec[i].len);
    }
    assert_int_equal(rec[N - 1].pragma, 2);
    assert_string_equal(rec[N - 1].ctype, "text/x");
    assert_memory_equal(rec[N - 1].body, "hello", 5);
    assert_int_equal(rec[N].pragma, 3);
    assert_string_equal(rec[N].ctype, "");
    assert_memory_equal(rec[N].body, "raw", 3);
    h_resp_free(r);

    /* Nothing queued: the batch wait parks and gets the next message. */
    h_conn_t *c = h_connect(&s);
    h_send_str(c, "GET /wait?peer_id=1 HTTP/1.1\r\nHost: x\r\nX-Pcsig-Batch: 1\r\n\r\n");
    h_expect_silence(c, H_SILENCE_MS);
    h_send_ok(&s, 4, 1, "later", 5, "text/plain");
    r = h_read(c);
    n = parse_batch(r, rec, 64);
    assert_int_equal(n, 1);
    assert_int_equal(rec[0].pragma, 4);
    assert_memory_equal(rec[0].body, "later", 5);
    h_resp_free(r);
    h_close(c);

    /* A stock client still gets one item per /wait. */
    r = h_wait_once(&s, 2);
    H_ASSERT_STATUS(r, 200, "OK");
    H_ASSERT_NO_HDR(r, "X-Pcsig-Batch-Count");
    H_ASSERT_BODY(r, "m3,3,1\n");
    h_resp_free(r);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

static void test_batches_split_at_the_body_limit(void **state)
{
    (void)state;
    h_server_t s;
    h_server_start(&s, "--max-body-bytes", "65536", (char *)NULL);
    uint64_t a = h_sign_in(&s, "a"), b = h_sign_in(&s, "b");
    char *big = malloc(20000);
    assert_non_null(big);
    enum { M = 12 };
    for (int i = 0; i < M; i++) {
        memset(big, 'a' + i, 20000);
        h_send_ok(&s, b, a, big, 20000, "application/octet-stream");
    }
    /* The join notice, then 12 x 20 KB in answers of at most 64 KiB each. */
    int seen = -1, answers = 0;
    while (seen < M - 1) {
        h_resp_t *r = batch_wait(&s, a);
        assert_true(r->body_len <= 65536);
        struct record rec[16];
        size_t n = parse_batch(r, rec, 16);
        assert_true(n >= 1);
        for (size_t k = 0; k < n; k++) {
            if (rec[k].pragma == a) { /* the join notice comes first */
                assert_int_equal(seen, -1);
                assert_int_equal(answers, 0);
                continue;
            }
            seen++;
            assert_int_equal(rec[k].pragma, b);
            assert_int_equal(rec[k].len, 20000);
            assert_int_equal((unsigned char)rec[k].body[0], 'a' + seen);
            assert_int_equal((unsigned char)rec[k].body[19999], 'a' + seen);
        }
        h_resp_free(r);
        answers++;
    }
    assert_true(answers >= 4); /* 240 KB cannot fit in fewer 64 KiB answers */
    free(big);
    assert_int_equal(h_server_stop(&s), 0);
    h_pass();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        H_TEST(test_joins_in_one_answer),
        H_TEST(test_batches_split_at_the_body_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
