/*
 * tls: TLS for the connection layer. The only file of pcsig that includes
 * OpenSSL headers; everything above it uses conn_read/conn_write/conn_close.
 *
 * Server: a tls_server_t holds the certificate, key and (for mutual TLS) the
 * client CA; tls_server_reload() swaps in freshly read files while existing
 * connections keep the context they started with. Client: a tls_client_t
 * holds the trust store, an optional client certificate, and a pool of up
 * to 8 session tickets for resumption (each new connection takes one of its
 * own). Both are thread-safe; a conn_t is not.
 * Errors: 0 or a negative errno; a one-line reason goes to err (a caller's
 * buffer of err_len bytes) where there is one.
 */
#ifndef PCSIG_TLS_H
#define PCSIG_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "conn.h"

typedef struct tls_server tls_server_t;
typedef struct tls_client tls_client_t;

struct tls_server_options {
    const char *cert_file;      /* PEM chain */
    const char *key_file;       /* PEM private key */
    const char *client_ca_file; /* non-NULL: require and verify client certificates */
    /* Sent (copied at tls_server_new) to a client that speaks plain HTTP to
     * the TLS port before closing; NULL: close without a word. The server
     * decides its bytes (response.c), not this layer. */
    const char *plain_http_answer;
    size_t plain_http_answer_len;
};

/* Returns 0 and *out, or -errno with the reason in err. */
int tls_server_new(const struct tls_server_options *o, tls_server_t **out, char *err, size_t err_len);
/* Re-read the files; on failure keep serving with the old ones. 0 or -errno + err.
 * Tickets issued before the reload keep resuming, except with mutual TLS
 * (where the client CA may have changed: everyone handshakes afresh). */
int tls_server_reload(tls_server_t *t, char *err, size_t err_len);
/* -EKEYEXPIRED with the reason in why when the certificate now served is
 * expired or not yet valid (it is served anyway: the operator's call), else 0. */
int tls_server_cert_validity(tls_server_t *t, char *why, size_t why_len);
void tls_server_free(tls_server_t *t); /* NULL-safe; connections may outlive it */

/* Wrap an accepted socket; the handshake runs inside the first reads/writes.
 * Takes ownership of fd on success; NULL when out of memory. */
conn_t *tls_server_wrap(tls_server_t *t, int fd);

/* Handshakes of a server since it was created, by result. "failed" counts
 * handshakes that began (a first byte arrived) and ended in an error, a
 * verification failure, plain HTTP on the TLS port, or the peer going away;
 * a connection closed before sending anything is not a handshake. */
struct tls_server_stats {
    unsigned long full;
    unsigned long resumed;
    unsigned long failed;
};
/* Read the counters (relaxed atomics: cheap, each value exact on its own).
 * Thread-safe; the counts go on while connections of t are served. */
void tls_server_stats(tls_server_t *t, struct tls_server_stats *out);

struct tls_client_options {
    const char *ca_file;   /* NULL: the system's trust store */
    const char *cert_file; /* client certificate for mutual TLS, or NULL */
    const char *key_file;
    bool insecure;         /* skip verification (logged loudly by the caller) */
};

int tls_client_new(const struct tls_client_options *o, tls_client_t **out, char *err, size_t err_len);
void tls_client_free(tls_client_t *t);
/* Wrap a connected socket for host (SNI and hostname/IP verification), offering
 * one of the pooled tickets for resumption. Takes ownership of fd on success;
 * NULL (fd untouched) with errno ENOMEM when out of memory, or EINVAL when
 * host cannot be set for verification (never connect unverified). */
conn_t *tls_client_wrap(tls_client_t *t, int fd, const char *host);

#endif
