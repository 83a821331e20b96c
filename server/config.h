/*
 * config: the server's options, their defaults and the three places they
 * come from.
 *
 * Every option is one row of a table in config.c (name, kind, field, limits,
 * --help text), and every source goes through that row and the one parser
 * of its kind:
 *   - the command line: --name VALUE or --name=VALUE (getopt_long);
 *     a boolean also --no-name;
 *   - the environment: PCSIG_NAME, the name upper-cased with '-' as '_'
 *     (PCSIG_TLS_CERT). Variables that name no option are ignored, since
 *     the server inherits PCSIG_* variables meant for other programs;
 *   - a file named by --config FILE (else PCSIG_CONFIG): "name = value"
 *     lines, '#' comment lines, blank lines, "double quotes" to keep spaces.
 * A flag beats the environment, which beats the file, which beats the
 * default; the cross-option checks (--tls-cert with --tls-key ...) run on
 * the merged result. An empty value in the environment or the file is an
 * error, never "unset": PCSIG_AUTH_TOKEN=$UNSET_VAR must not quietly turn
 * authentication off.
 *
 * A boolean (allow-quit, secure-ids, web) is a bare flag --NAME (on), --no-NAME
 * (off) or --NAME=BOOL on the command line, and true/false (yes/no, 1/0) in
 * the environment and the file, so that a flag can override either way.
 *
 * Errors are one line on the caller's stream, naming where the value came
 * from ("pcsig-server: /etc/pcsig.conf:12: unknown key 'prot'"); the bytes
 * of a value, a key or a path are escaped there (log_escape), never echoed
 * raw.
 */
#ifndef PCSIG_CONFIG_H
#define PCSIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define CONFIG_MAX_FILE_BYTES (1024 * 1024) /* a bigger --config file is an error */
#define CONFIG_MAX_LINE 4096                /* bytes of one line, without its '\n' */

struct config_str; /* one string owned by a config (config.c) */

/*
 * Strings: every const char * below is NULL or points into storage owned by
 * the config itself (copied from argv, the environment or the file), valid
 * until config_free. A struct copy (the server keeps one) shares them: only
 * the struct config_load filled is passed to config_free, and only after the
 * last copy is done with.
 */
/* The most bytes --ice-server, --ice-username and --ice-credential may hold
 * together: /config.json is built in WEB_CONFIG_MAX bytes, and JSON escaping
 * at most sextuples a byte, so whatever passes the start-up check fits. */
#define CONFIG_ICE_MAX_BYTES 8192
#define WEB_CONFIG_MAX (64 * 1024)

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
    uint64_t accept_give_up_ms; /* accepting failed this long: stop, exit 1 */
    size_t max_head;
    size_t max_body;
    size_t queue_max_msgs;
    size_t queue_max_bytes;
    size_t max_output_bytes;       /* unsent answer bytes one connection may hold */
    size_t max_total_output_bytes; /* ... and every connection together */
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
    bool web;                  /* serve the browser page at / (web.c) */
    const char *web_root;      /* serve this directory instead of the embedded page */
    const char *ice_servers;   /* comma-separated stun:/turn: URLs for the page, or NULL */
    const char *ice_username;  /* TURN credentials handed to the page */
    const char *ice_credential;
    const char *ice_secret;    /* TURN REST shared secret: time-limited credentials */
    const char *cluster;       /* redis://HOST:PORT[/DB]: act as one with other instances */
    const char *cluster_password;      /* Redis AUTH password */
    const char *cluster_password_file; /* ... read from this file's first line */
    const char *instance_name; /* this instance in the cluster; NULL: host:port */
    uint64_t cluster_timeout_ms; /* a Redis command unanswered this long fails (503) */
    uint64_t cluster_lease_ms;   /* an instance silent this long is taken for dead */
    struct config_str *owned;  /* the storage of the strings above */
};

#define CONFIG_OK 0
#define CONFIG_EXIT_OK 1 /* --help or --version printed on stdout: exit 0 */
#define CONFIG_ERROR (-1) /* a one-line error written to err: exit 2 */
/*
 * Fill cfg from the defaults, the config file, envp (a NULL-terminated
 * "NAME=value" array such as environ; NULL for none) and argv, in that
 * order, each overriding the one before. getopt_long may permute argv.
 * Returns CONFIG_OK, CONFIG_EXIT_OK or CONFIG_ERROR; on anything but
 * CONFIG_OK cfg owns nothing. On CONFIG_OK the caller owns cfg's strings and
 * releases them with config_free. Not thread-safe (getopt's globals).
 */
int config_load(struct server_config *cfg, int argc, char **argv, char *const *envp, FILE *err);

/*
 * The checks that look outside the process, run on a loaded config before
 * start-up so that a bad value stops the server with one line and exit
 * status 2 rather than as a start-up failure: --bind and the host of
 * --metrics-bind resolve to IPv4 or IPv6 addresses of this host
 * ("300.1.1.1" and "192.0.2.1" do not), and the files of --tls-cert,
 * --tls-key, --tls-client-ca and --auth-token-file open for reading
 * ("pcsig-server: --tls-cert FILE: No such file or directory"). Their
 * contents are the server's to judge. (--config is read by config_load.)
 * Returns CONFIG_OK or CONFIG_ERROR (the line written to err). May block on
 * a DNS lookup for a --bind name, as listening would. Thread-safe.
 */
int config_preflight(const struct server_config *cfg, FILE *err);

/* Release the strings cfg owns and set its string fields to NULL. NULL-safe;
 * safe to call again. */
void config_free(struct server_config *cfg);

#endif
