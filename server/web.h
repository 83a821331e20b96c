/*
 * web: the browser page (web/index.html, web/app.js, web/app.css) that
 * makes pcsig a demo out of the box, and its small JSON configuration.
 *
 *   GET /, /index.html, /app.js, /app.css   the files built into the binary
 *                                           (or those of --web-root DIR)
 *   GET /config.json                        {"iceServers":[...]} for the page
 *   HEAD of each of them                    the same head, no body
 *
 * Each file goes out with its Content-Type, an ETag (a hash of its bytes:
 * If-None-Match gets 304), Cache-Control: no-cache (revalidate, so a new
 * build is seen at once), a strict Content-Security-Policy and nosniff.
 * The router asks web_answer only after the protocol paths, /quit, /health
 * and /metrics, so these paths never shadow them.
 *
 * --web-root: only regular files below DIR, reached without following a
 * symbolic link, by a path of plain segments ([A-Za-z0-9_.-], none starting
 * with '.'): no "..", no dot files, no percent-decoding. Anything else is
 * the router's 404, as for a file that is not there.
 */
#ifndef PCSIG_WEB_H
#define PCSIG_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "http.h"

#define WEB_MAX_FILE (1u << 20)  /* a bigger file under --web-root is not served */
#define WEB_MAX_PATH 255         /* request paths longer than this are not ours */
#define WEB_TURN_REST_TTL_S 86400 /* --ice-secret credentials are valid this long */

/* One file built into the binary (the generated web_assets.c). */
struct web_embedded {
    const char *path; /* "/index.html" */
    const unsigned char *data;
    size_t len;
};
extern const struct web_embedded web_embedded_files[];
extern const size_t web_embedded_count;

struct web;

/*
 * The page's state for cfg (web, web_root and the ice-* options; cfg must
 * outlive it). 0 and *out, or -errno (the --web-root directory does not
 * open, or no memory) with the reason logged. The caller owns *out and
 * frees it with web_free.
 */
int web_create(const struct server_config *cfg, struct web **out);
void web_free(struct web *w); /* NULL-safe */

/*
 * Answer req into out when its path is one of the page's: the status of
 * the answer appended (200, 304, 405, or 503 when it could not be built),
 * or -1 when not even that could be. 0 when the path is not the page's
 * (nothing written; the router's 404 follows).
 * Thread-safe: w is read-only after web_create.
 */
int web_answer(const struct web *w, const http_request_t *req, buf_t *out, bool keep_alive);

#endif
