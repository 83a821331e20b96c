/*
 * web: serving the browser page. See web.h for what is served and why the
 * paths and headers are what they are.
 */
#include "web.h"
#include "json_text.h"
#include "strlit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "clock.h"
#include "log.h"
#include "response.h"

/*
 * The page loads only its own script and style (no inline script, no
 * eval), shows camera streams (srcObject needs no source list) and talks
 * to its own server or to another one the user types: connect-src allows
 * http(s) for that, since the page's whole job is to reach a signaling
 * server of the user's choice; script-src 'self' is what keeps a peer's
 * bytes from ever running.
 */
#define WEB_CSP                                                                 \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; "           \
    "style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "           \
    "connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; "     \
    "frame-ancestors 'none'\r\n"
#define WEB_HEADERS                                                             \
    WEB_CSP                                                                     \
    "X-Content-Type-Options: nosniff\r\n"                                       \
    "Referrer-Policy: no-referrer\r\n"

#define WEB_ETAG_LEN 18 /* '"' + 16 hex digits + '"' */

struct web {
    const struct server_config *cfg;
    int root_fd; /* --web-root, or -1: the embedded files */
    /* The embedded files' ETags, computed once: web_embedded_count of them. */
    char (*etags)[WEB_ETAG_LEN + 1];
};

/* FNV-1a 64 of the bytes: a cache validator, not a security measure. */
static void etag_of(const unsigned char *p, size_t n, char out[WEB_ETAG_LEN + 1])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    static const char hex[] = "0123456789abcdef";
    out[0] = '"';
    for (int i = 0; i < 16; i++)
        out[1 + i] = hex[(h >> (60 - 4 * i)) & 0xf];
    out[17] = '"';
    out[18] = '\0';
}

int web_create(const struct server_config *cfg, struct web **out)
{
    *out = NULL;
    struct web *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->cfg = cfg;
    w->root_fd = -1;
    if (cfg->web_root) {
        w->root_fd = open(cfg->web_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w->root_fd < 0) {
            int e = errno;
            log_errno(LOG_ERROR, e, "--web-root %s", cfg->web_root);
            free(w);
            return -e;
        }
    }
    w->etags = calloc(web_embedded_count ? web_embedded_count : 1, sizeof *w->etags);
    if (!w->etags) {
        web_free(w);
        return -ENOMEM;
    }
    for (size_t i = 0; i < web_embedded_count; i++)
        etag_of(web_embedded_files[i].data, web_embedded_files[i].len, w->etags[i]);
    *out = w;
    return 0;
}

void web_free(struct web *w)
{
    if (!w)
        return;
    if (w->root_fd >= 0)
        close(w->root_fd);
    free(w->etags);
    free(w);
}

/* The file name extension's Content-Type ("text/html; charset=utf-8"). Pure. */
static const char *web_content_type(const char *path, size_t len)
{
    static const struct {
        const char *ext, *ctype;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".svg", "image/svg+xml"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t n = strlen(types[i].ext);
        if (len > n && strncasecmp(path + len - n, types[i].ext, n) == 0)
            return types[i].ctype;
    }
    return "application/octet-stream";
}

/* Whether path[0..len) is a safe request path for --web-root (see web.h). Pure. */
static bool web_path_ok(const char *path, size_t len)
{
    if (len < 2 || len > WEB_MAX_PATH || path[0] != '/')
        return false;
    bool seg_start = true;
    for (size_t i = 1; i < len; i++) {
        char c = path[i];
        if (c == '/') {
            if (seg_start)
                return false; /* "//" */
            seg_start = true;
            continue;
        }
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '_' || c == '-' || c == '.';
        if (!plain || (seg_start && c == '.'))
            return false; /* "..", dot files, '%', '\\', anything odd */
        seg_start = false;
    }
    return !seg_start; /* no trailing '/' */
}

/* Whether an If-None-Match value matches etag (a quoted tag, weak or not, in
 * a ','-separated list, or "*"). Pure. */
static bool web_etag_matches(const char *value, size_t len, const char *etag)
{
    size_t elen = strlen(etag);
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        const char *t = value + start;
        size_t tlen = end - start;
        if (tlen == 1 && t[0] == '*')
            return true;
        if (tlen > 2 && t[0] == 'W' && t[1] == '/') { /* weak comparison */
            t += 2;
            tlen -= 2;
        }
        if (tlen == elen && memcmp(t, etag, elen) == 0)
            return true;
    }
    return false;
}

/*
 * The TURN REST credentials (draft-uberti-behave-turn-rest): the username
 * is "<expiry unix time>:pcsig", the password base64(HMAC-SHA1(secret,
 * username)); a TURN server with the same static-auth-secret checks both.
 */
static int turn_rest(buf_t *out, const char *secret, unsigned long long now_s)
{
    char user[48];
    int n = snprintf(user, sizeof user, "%llu:pcsig", now_s + WEB_TURN_REST_TTL_S);
    if (n < 0 || (size_t)n >= sizeof user)
        return -EINVAL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)user, (size_t)n,
              mac, &maclen))
        return -EINVAL;
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    EVP_EncodeBlock(b64, mac, (int)maclen);
    int rc = buf_append_str(out, ",\"username\":");
    if (rc == 0)
        rc = json_append_string(out, user);
    if (rc == 0)
        rc = buf_append_str(out, ",\"credential\":");
    if (rc == 0)
        rc = json_append_string(out, (const char *)b64);
    return rc;
}

/* The /config.json body for cfg at unix time now_s, appended to out. 0 or
 * the buf error. */
static int web_config_json(const struct server_config *cfg, unsigned long long now_s, buf_t *out)
{
    int rc = buf_append_str(out, "{\"iceServers\":[");
    if (rc == 0 && cfg->ice_servers) {
        /* One entry with every URL: the credentials apply to the TURN ones. */
        rc = buf_append_str(out, "{\"urls\":[");
        for (const char *p = cfg->ice_servers; rc == 0 && *p;) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            /* config.c allowed no quote, backslash or control byte in a URL. */
            rc = buf_printf(out, "%s\"%.*s\"", p == cfg->ice_servers ? "" : ",", (int)len, p);
            p += len + (end ? 1 : 0);
        }
        if (rc == 0)
            rc = buf_append_str(out, "]");
        if (rc == 0 && cfg->ice_secret) {
            rc = turn_rest(out, cfg->ice_secret, now_s);
        } else if (rc == 0 && cfg->ice_username) {
            rc = buf_append_str(out, ",\"username\":");
            if (rc == 0)
                rc = json_append_string(out, cfg->ice_username);
            if (rc == 0)
                rc = buf_append_str(out, ",\"credential\":");
            if (rc == 0)
                rc = json_append_string(out, cfg->ice_credential);
        }
        if (rc == 0)
            rc = buf_append_str(out, "}");
    }
    return rc ? rc : buf_append_str(out, "]}\n");
}

/* The 503 of a failed answer: its status, or -1 when even that failed. */
static int no_memory(buf_t *out)
{
    if (resp_append_outcome(out, OUTCOME_NO_MEMORY, false, 0) < 0)
        return -1;
    return outcome_answer(OUTCOME_NO_MEMORY)->status;
}

/* One 200 or 304 answer for a file with its ETag (a HEAD: the same head,
 * no body). */
static int answer_file(buf_t *out, const http_request_t *req, const char *path, size_t plen,
                        const void *body, size_t len, const char *etag, bool ka)
{
    buf_t extra;
    buf_init(&extra, 1024);
    const http_header_t *inm = http_find_header(req->headers, req->num_headers, "If-None-Match");
    bool not_modified = inm && web_etag_matches(inm->value.ptr, inm->value.len, etag);
    int rc = buf_printf(&extra, "ETag: %s\r\n" WEB_HEADERS, etag);
    if (rc == 0) {
        const char *ctype = web_content_type(path, plen);
        /* A 304 names the length a 200 would have, and carries no body. */
        struct resp r = {
            .status = not_modified ? 304 : 200,
            .reason = not_modified ? "Not Modified" : "OK",
            .has_ctype = true, .ctype = ctype, .ctype_len = strlen(ctype),
            .body = body, .body_len = len, .keep_alive = ka, .extra = extra.data,
            .head_only = not_modified || req->method == HTTP_METHOD_HEAD,
        };
        rc = resp_append(out, &r);
    }
    int status = rc == 0 ? (not_modified ? 304 : 200) : no_memory(out);
    buf_free(&extra);
    return status;
}

/*
 * Open path (web_path_ok) below root_fd one segment at a time, never
 * following a symbolic link (O_NOFOLLOW on each): a link anywhere, even
 * one pointing inside, is refused. -errno or the fd.
 */
static int open_beneath(int root_fd, const char *path, size_t len)
{
    char seg[WEB_MAX_PATH + 1];
    int dir = root_fd;
    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        memcpy(seg, path + i, j - i);
        seg[j - i] = '\0';
        bool last = j == len;
        int fd = openat(dir, seg, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |
                                      (last ? 0 : O_DIRECTORY));
        int e = errno;
        if (dir != root_fd)
            close(dir);
        if (fd < 0)
            return -e;
        if (last)
            return fd;
        dir = fd;
        i = j + 1;
    }
}

/*
 * A --web-root file's ETag from its inode, size and modification time, as
 * file servers commonly do: a 304 or a HEAD then costs an fstat, not a read
 * and a hash of the whole file.
 */
static void etag_of_stat(const struct stat *st, char out[WEB_ETAG_LEN + 1])
{
    const uint64_t id[4] = {(uint64_t)st->st_ino, (uint64_t)st->st_size,
                            (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec};
    etag_of((const unsigned char *)id, sizeof id, out);
}

/* A file of --web-root: the status answered (200/304, or the 503 of a
 * failed answer; -1 if none), or 0 for "not ours". */
static int answer_from_root(const struct web *w, const http_request_t *req, const char *path,
                            size_t plen, buf_t *out, bool ka)
{
    if (!web_path_ok(path, plen))
        return 0;
    int fd = open_beneath(w->root_fd, path, plen);
    if (fd < 0)
        return 0;
    struct stat st;
    int served = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= WEB_MAX_FILE) {
        char etag[WEB_ETAG_LEN + 1];
        etag_of_stat(&st, etag);
        const http_header_t *inm =
            http_find_header(req->headers, req->num_headers, "If-None-Match");
        if (req->method == HTTP_METHOD_HEAD ||
            (inm && web_etag_matches(inm->value.ptr, inm->value.len, etag))) {
            /* No body goes out: the length is the file's size. */
            served = answer_file(out, req, path, plen, NULL, (size_t)st.st_size, etag, ka);
        } else {
            buf_t data;
            buf_init(&data, WEB_MAX_FILE);
            int rc = buf_read_fd(&data, fd);
            if (rc == 0)
                served = answer_file(out, req, path, plen, data.data, data.len, etag, ka);
            else
                log_errno(LOG_WARN, -rc, "--web-root: reading %.*s", (int)plen, path);
            buf_free(&data);
        }
    }
    close(fd);
    return served;
}

static int answer_config(const struct web *w, buf_t *out, bool head, bool ka)
{
    buf_t body;
    buf_init(&body, WEB_CONFIG_MAX); /* config.c keeps the ICE options within it */
    int rc = web_config_json(w->cfg, (unsigned long long)clock_wall_s(), &body);
    if (rc == 0) {
        struct resp r = {
            .status = 200, .reason = "OK", .has_ctype = true, .ctype = "application/json",
            .ctype_len = 16, .body = body.data, .body_len = body.len, .keep_alive = ka,
            .extra = WEB_HEADERS, .head_only = head,
        };
        rc = resp_append(out, &r);
    }
    buf_free(&body);
    return rc == 0 ? 200 : no_memory(out);
}

int web_answer(const struct web *w, const http_request_t *req, buf_t *out, bool ka)
{
    const char *path = req->path.ptr;
    size_t plen = req->path.len;
    if (plen == 1 && path[0] == '/') {
        path = "/index.html";
        plen = strlen(path);
    }
    bool config = plen == STRLIT_LEN("/config.json") && memcmp(path, STRLIT("/config.json")) == 0;
    size_t found = web_embedded_count;
    for (size_t i = 0; !config && w->root_fd < 0 && i < web_embedded_count; i++) {
        if (strlen(web_embedded_files[i].path) == plen &&
            memcmp(web_embedded_files[i].path, path, plen) == 0)
            found = i;
    }
    bool ours = config || found < web_embedded_count || (w->root_fd >= 0 && web_path_ok(path, plen));
    if (!ours)
        return 0;
    bool head = req->method == HTTP_METHOD_HEAD;
    if (req->method != HTTP_METHOD_GET && !head) {
        if (resp_append_outcome(out, OUTCOME_WEB_USE_GET, ka, 0) < 0)
            return -1;
        return outcome_answer(OUTCOME_WEB_USE_GET)->status;
    }
    if (config)
        return answer_config(w, out, head, ka);
    if (w->root_fd >= 0)
        return answer_from_root(w, req, path, plen, out, ka);
    const struct web_embedded *f = &web_embedded_files[found];
    return answer_file(out, req, path, plen, f->data, f->len, w->etags[found], ka);
}
