/* JSON string escaping; see json_text.h. */
#include "json_text.h"
#include "strlit.h"

#include <stdint.h>
#include <string.h>

/* The letter of JSON's two-byte escape of c ('n' for '\n', ...), or 0: none. */
static char json_short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* Bytes JSON needs for byte c: 1 as it is, 2 for \" \\ \n ..., 6 for \u00XX. */
static size_t json_cost(unsigned char c)
{
    if (json_short_escape(c))
        return 2;
    return c < 0x20 || c >= 0x7f ? 6 : 1;
}

size_t json_escaped_len(const char *p, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += json_cost((unsigned char)p[i]);
    return len;
}

int json_append_escaped(buf_t *b, const char *p, size_t n, size_t room, size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 0, run = 0, i = 0;
    int rc = 0;
    for (; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)p[i];
        size_t cost = json_cost(c);
        if (out + cost > room)
            break;
        out += cost;
        if (cost == 1)
            continue;
        if (i > run)
            rc = buf_append(b, p + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
        if (cost == 2)
            esc[1] = json_short_escape(c);
        if (rc == 0)
            rc = buf_append(b, esc, cost);
    }
    if (rc == 0 && i > run)
        rc = buf_append(b, p + run, i - run);
    *used = i;
    return rc;
}

int json_append_string(buf_t *b, const char *s)
{
    size_t used;
    int rc = buf_append(b, STRLIT("\""));
    if (rc == 0)
        rc = json_append_escaped(b, s, strlen(s), SIZE_MAX, &used);
    return rc == 0 ? buf_append(b, STRLIT("\"")) : rc;
}
