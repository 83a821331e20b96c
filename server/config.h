/* config: the server's options, their defaults and the command-line parser. */
#ifndef PCSIG_CONFIG_H
#define PCSIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct server_config {
    const char *bind;       /* NULL: every interface, IPv4 and IPv6 */
    uint16_t port;          /* 0: the kernel picks (reported on stdout) */
    const char *port_file;  /* write the bound port here when listening */
    int workers;
    size_t max_connections;
    size_t max_members;
    uint64_t member_timeout_ms;
    uint64_t wait_timeout_ms;
    uint64_t read_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t shutdown_grace_ms;
    size_t max_head;
    size_t max_body;
    size_t queue_max_msgs;
    size_t queue_max_bytes;
    bool allow_quit;
    enum log_level log_level;
    enum log_format log_format;
    uint64_t access_log_every; /* 0: no access log; N: one request in N logged */
    const char *metrics_bind;  /* ADDR:PORT for /health and /metrics; NULL: the main ports */
    const char *metrics_port_file; /* write the metrics port here when listening */
    const char *tls_cert;      /* with tls_key: TLS on --tls-port, or on --port */
    const char *tls_key;
    const char *tls_client_ca; /* require client certificates from this CA */
    int tls_port;              /* -1: no separate TLS port */
    bool secure_ids;           /* per-member secret tokens, 403 without */
    const char *auth_token;    /* sign-in needs "Authorization: Bearer <this>" */
    const char *auth_token_file; /* ... or one of the tokens in this file */
    size_t max_conns_per_ip;   /* 0: no limit */
    uint64_t rate_limit;       /* requests per second per address, 0: no limit */
};

/* Fill cfg with the defaults. */
void config_defaults(struct server_config *cfg);

#define CONFIG_OK 0
#define CONFIG_EXIT_OK 1 /* --help or --version printed: exit 0 */
#define CONFIG_ERROR (-1) /* a one-line error printed: exit 2 */
/* Parse argv over the defaults in cfg. Strings point into argv. */
int config_parse(int argc, char **argv, struct server_config *cfg);

#endif
