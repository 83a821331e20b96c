/*
 * fuzz_entry: libFuzzer target for the peer-list entry codec of proto.h.
 *
 * 1. The input is parsed as a peer list, line after line, with
 *    proto_entry_parse, and each result is compared with a reference
 *    reading of "name,id,0|1\n" written independently of common/proto.c:
 *    bytes consumed, the name slice (at the line's start, non-empty, no
 *    ','), the id (1..PROTO_MAX_ID) and the flag; a line cut before its
 *    '\n' is incomplete; an accepted entry printed back with
 *    proto_entry_append parses to the same fields (and the same bytes
 *    when its id has no leading zero).
 * 2. Round trip: names taken from the input (whole, and each line) are
 *    passed through proto_name_sanitize, as the server does at sign-in
 *    ("peer_<id>" when that leaves nothing), given valid ids (the edges
 *    1, 9, 10, PROTO_MAX_ID-1, PROTO_MAX_ID, one derived from the input
 *    and, for each line, the number its digits spell when valid),
 *    appended as one list and parsed back: every field must return
 *    unchanged and the list must be consumed exactly. An append that
 *    does not fit a small buffer leaves it as it was.
 * Violations abort().
 */
#include <errno.h>

#include "buf.h"
#include "strlit.h"
#include "fuzz_common.h"
#include "proto.h"

#define RT_MAX_ITEMS 24
#define RT_MAX_PIECES 16

/* Reference reading of the line s[0..line) (without its '\n'). */
static bool ref_entry(const char *s, size_t line, size_t *name_len, uint64_t *id,
                      bool *connected, bool *id_canonical)
{
    const char *c1 = memchr(s, ',', line), *c2;
    size_t id_len;

    if (c1 == NULL || c1 == s)
        return false;
    c2 = memchr(c1 + 1, ',', line - (size_t)(c1 + 1 - s));
    if (c2 == NULL)
        return false;
    id_len = (size_t)(c2 - c1 - 1);
    if (fuzz_ref_u64(c1 + 1, id_len, id) != 0 || *id == 0 || *id > (uint64_t)INT32_MAX)
        return false;
    if ((size_t)(s + line - c2) != 2 || (c2[1] != '0' && c2[1] != '1'))
        return false;
    *name_len = (size_t)(c1 - s);
    *connected = c2[1] == '1';
    *id_canonical = c1[1] != '0';
    return true;
}

static size_t digits(uint64_t v)
{
    size_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

/* Parse an exact-size copy of p[0..n) and require one entry with these fields. */
static void expect_entry(const char *p, size_t n, long consumed, const char *name,
                         size_t name_len, uint64_t id, bool connected)
{
    char *copy = fuzz_dup(p, n);
    proto_entry_t e;
    long rc = proto_entry_parse(copy, n, &e);

    FUZZ_CHECK(rc == consumed);
    FUZZ_CHECK(e.name == copy && e.name_len == name_len);
    FUZZ_CHECK(memcmp(e.name, name, name_len) == 0);
    FUZZ_CHECK(e.id == id && e.connected == connected);
    free(copy);
}

static void check_raw_list(const char *s, size_t n)
{
    size_t off = 0;

    for (;;) {
        const char *p = s + off;
        size_t m = n - off, line, name_len = 0;
        const char *nl = m != 0 ? memchr(p, '\n', m) : NULL;
        uint64_t id = 0;
        bool connected = false, canonical = false;
        proto_entry_t e;
        long rc = proto_entry_parse(p, m, &e);

        if (nl == NULL) {
            FUZZ_CHECK(rc == 0);
            return;
        }
        line = (size_t)(nl - p);
        if (!ref_entry(p, line, &name_len, &id, &connected, &canonical)) {
            FUZZ_CHECK(rc == -EINVAL);
            off += line + 1;
            continue;
        }
        FUZZ_CHECK(rc == (long)(line + 1));
        FUZZ_CHECK(e.name == p && e.name_len == name_len && e.name_len > 0);
        FUZZ_CHECK(memchr(e.name, ',', e.name_len) == NULL);
        FUZZ_CHECK(e.id == id && e.connected == connected);

        /* the line alone gives the same; without its '\n' it is incomplete */
        expect_entry(p, line + 1, rc, p, name_len, id, connected);
        char *cut = fuzz_dup(p, line);
        FUZZ_CHECK(proto_entry_parse(cut, line, &e) == 0);
        free(cut);

        /* printed back, it reads the same (and is the same line if canonical) */
        buf_t b;
        buf_init(&b, line + 32);
        FUZZ_CHECK(proto_entry_append(&b, p, name_len, id, connected) == 0);
        FUZZ_CHECK(b.len == name_len + 1 + digits(id) + 3);
        expect_entry(b.data, b.len, (long)b.len, p, name_len, id, connected);
        if (canonical)
            FUZZ_CHECK(b.len == line + 1 && memcmp(b.data, p, b.len) == 0);
        buf_free(&b);
        off += line + 1;
    }
}

typedef struct rt_item {
    char name[PROTO_MAX_NAME + 32];
    size_t name_len;
    uint64_t id;
    bool connected;
} rt_item_t;

/*
 * An id the input steers: the decimal digits found in s[0..n), read as one
 * number, when that is a valid id; else fallback (derived from a hash).
 */
static uint64_t steered_id(const char *s, size_t n, uint64_t fallback)
{
    uint64_t v = 0;
    size_t nd = 0;

    for (size_t i = 0; i < n && nd < 10; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (uint64_t)(s[i] - '0');
            nd++;
        }
    }
    return nd > 0 && v >= 1 && v <= PROTO_MAX_ID ? v : fallback;
}

/* The member name the server would give raw[0..n) for this id. */
static void make_name(const char *raw, size_t n, uint64_t id, rt_item_t *it)
{
    char *out = malloc(PROTO_MAX_NAME); /* the documented minimum, exactly */
    size_t len;

    FUZZ_CHECK(out != NULL);
    len = proto_name_sanitize(raw, n, out);
    FUZZ_CHECK(len <= PROTO_MAX_NAME);
    if (len > 0) {
        memcpy(it->name, out, len);
        it->name_len = len;
    } else {
        buf_t b;
        buf_init(&b, sizeof it->name);
        FUZZ_CHECK(buf_append_str(&b, "peer_") == 0 && buf_append_u64(&b, id) == 0);
        memcpy(it->name, b.data, b.len);
        it->name_len = b.len;
        buf_free(&b);
    }
    free(out);
}

/* An append that does not fit changes nothing; one that fits adds the line. */
static void check_append_bounded(const rt_item_t *it, uint64_t h)
{
    size_t line = it->name_len + 1 + digits(it->id) + 3;
    size_t max = (size_t)(h % (line + 8)), pre = max / 3;
    buf_t b;
    int rc;

    buf_init(&b, max);
    for (size_t i = 0; i < pre; i++)
        FUZZ_CHECK(buf_append(&b, STRLIT("#")) == 0);
    rc = proto_entry_append(&b, it->name, it->name_len, it->id, it->connected);
    if (pre + line <= max) {
        FUZZ_CHECK(rc == 0 && b.len == pre + line);
        expect_entry(b.data + pre, line, (long)line, it->name, it->name_len, it->id,
                     it->connected);
    } else {
        FUZZ_CHECK(rc == -E2BIG && b.len == pre);
    }
    for (size_t i = 0; i < pre; i++)
        FUZZ_CHECK(b.data[i] == '#');
    buf_free(&b);
}

static void check_round_trip(const char *s, size_t n)
{
    static const uint64_t edge_ids[] = { 1, 9, 10, PROTO_MAX_ID - 1, PROTO_MAX_ID };
    static rt_item_t items[RT_MAX_ITEMS];
    size_t count = 0, pieces = 0, start = 0;
    buf_t list;

    /* the whole input as one name, with each edge id and one derived id */
    for (size_t i = 0; i <= sizeof edge_ids / sizeof edge_ids[0]; i++) {
        uint64_t h = fuzz_hash(s, n, i);
        uint64_t id = i < sizeof edge_ids / sizeof edge_ids[0] ? edge_ids[i]
                                                                : 1 + h % PROTO_MAX_ID;
        make_name(s, n, id, &items[count]);
        items[count].id = id;
        items[count].connected = (h >> 40) & 1;
        count++;
    }
    /* each line of the input as a name, with the id its digits spell */
    for (size_t i = 0; i <= n && pieces < RT_MAX_PIECES; i++) {
        if (i < n && s[i] != '\n')
            continue;
        uint64_t h = fuzz_hash(s + start, i - start, 1000 + pieces);
        uint64_t id = steered_id(s + start, i - start, 1 + h % PROTO_MAX_ID);
        make_name(s + start, i - start, id, &items[count]);
        items[count].id = id;
        items[count].connected = (h >> 40) & 1;
        count++;
        pieces++;
        start = i + 1;
    }

    buf_init(&list, 1u << 16);
    for (size_t i = 0; i < count; i++) {
        FUZZ_CHECK(proto_entry_append(&list, items[i].name, items[i].name_len, items[i].id,
                                      items[i].connected) == 0);
        check_append_bounded(&items[i], fuzz_hash(items[i].name, items[i].name_len, i));
    }

    /* the whole list, parsed back from an exact-size copy */
    char *copy = fuzz_dup(list.data, list.len);
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        proto_entry_t e;
        size_t line = items[i].name_len + 1 + digits(items[i].id) + 3;
        long rc = proto_entry_parse(copy + off, list.len - off, &e);

        FUZZ_CHECK(rc == (long)line);
        FUZZ_CHECK(e.name == copy + off && e.name_len == items[i].name_len);
        FUZZ_CHECK(memcmp(e.name, items[i].name, e.name_len) == 0);
        FUZZ_CHECK(e.id == items[i].id && e.connected == items[i].connected);
        off += line;
    }
    FUZZ_CHECK(off == list.len);
    free(copy);
    buf_free(&list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer's buffer is exactly size bytes on the heap */
    const char *s = (const char *)data;

    check_raw_list(s, size);
    check_round_trip(s, size);
    return 0;
}
