/*
 * config: command-line options. Every option has one line in --help with its
 * default; a bad value is a one-line error naming the option.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "proto.h"
#include "response.h"

void config_defaults(struct server_config *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *cfg = (struct server_config){
        .bind = NULL,
        .port = 8888,
        .workers = ncpu > 0 && ncpu < 64 ? (int)ncpu : 2,
        .max_connections = 0, /* 0: derived from the open-file limit at start */
        .max_members = 100000,
        .member_timeout_ms = 30000,
        .wait_timeout_ms = 30000,
        .read_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .shutdown_grace_ms = 5000,
        .max_head = 16 * 1024,
        .max_body = 4 * 1024 * 1024,
        .queue_max_msgs = 1000,
        .queue_max_bytes = 16 * 1024 * 1024,
        .allow_quit = false,
        .log_level = LOG_INFO,
        .tls_port = -1,
    };
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: pcsig-server [options]\n"
        "A peerconnection signaling server (wire-compatible with WebRTC's\n"
        "peerconnection_server).\n\n"
        "  --port N               TCP port, 0 = any free port (default 8888)\n"
        "  --bind ADDR            address to listen on (default: all, IPv4 and IPv6)\n"
        "  --port-file FILE       write the bound port to FILE once listening\n"
        "  --workers N            worker threads (default: number of cores)\n"
        "  --max-connections N    open connections before new ones get 503\n"
        "                         (default: open-file limit minus 64)\n"
        "  --max-members N        signed-in members before sign-in gets 503 (default 100000)\n"
        "  --member-timeout SEC   remove a member with no parked /wait after SEC (default 30)\n"
        "  --wait-timeout SEC     answer an idle parked /wait empty after SEC (default 30)\n"
        "  --read-timeout SEC     a started request must complete within SEC, else 408 (default 10)\n"
        "  --idle-timeout SEC     close an idle keep-alive connection after SEC (default 60)\n"
        "  --shutdown-grace SEC   on SIGTERM, wait up to SEC for answers to flush (default 5)\n"
        "  --max-header-bytes N   request line + headers limit, else 431 (default 16384)\n"
        "  --max-body-bytes N     request body limit, else 413 (default 4194304)\n"
        "  --queue-max-msgs N     messages queued per member, else 503 (default 1000)\n"
        "  --queue-max-bytes N    message bytes queued per member, else 503 (default 16777216)\n"
        "  --allow-quit           let GET /quit stop the server (default: 403)\n"
        "  --tls-cert FILE        PEM certificate chain: serve TLS (on --tls-port if\n"
        "                         given, else on --port)\n"
        "  --tls-key FILE         PEM private key of --tls-cert\n"
        "  --tls-port N           a TLS listener beside the plain one (0 = any free port)\n"
        "  --tls-client-ca FILE   require client certificates signed by this CA (mutual TLS)\n"
        "  --secure-ids           give each member a secret token at sign-in (header\n"
        "                         X-Pcsig-Token); /wait, /message, /sign_out must carry it\n"
        "                         (same header, or token= in the query), else 403\n"
        "  --auth-token TOKEN     /sign_in needs 'Authorization: Bearer TOKEN', else 401\n"
        "  --auth-token-file FILE the same with any token of FILE (one per line)\n"
        "  --max-conns-per-ip N   open connections per client address, else 429 (default: off)\n"
        "  --rate-limit N         requests per second per client address (burst 2N),\n"
        "                         else 429 (default: off)\n"
        "                         SIGHUP re-reads certificate and key without dropping anyone\n"
        "  --log-level LEVEL      error, warn, info or debug (default info)\n"
        "  --log-format FORMAT    text or json (one object per line) (default text)\n"
        "  --access-log N         log one request in N at info level, 0 = off (default 0)\n"
        "  --metrics-bind ADDR:PORT  serve /health and /metrics only there, in plain HTTP\n"
        "                         ([::1]:9100, 127.0.0.1:9100, localhost:0 = any free\n"
        "                         port) (default: on the main ports)\n"
        "  --metrics-port-file FILE  write the bound metrics port to FILE once listening\n"
        "  --version              print the version\n"
        "  --help                 this text\n");
}

/* Seconds with up to three decimals ("30", "0.5") into milliseconds. */
static int parse_seconds(const char *s, uint64_t *ms)
{
    const char *dot = strchr(s, '.');
    size_t ilen = dot ? (size_t)(dot - s) : strlen(s);
    uint64_t whole = 0, frac = 0;
    if (ilen == 0 && !dot)
        return -EINVAL;
    if (ilen > 0 && proto_parse_u64(s, ilen, &whole) < 0)
        return -EINVAL;
    if (dot) {
        size_t flen = strlen(dot + 1);
        if (flen == 0 || flen > 3 || proto_parse_u64(dot + 1, flen, &frac) < 0)
            return -EINVAL;
        for (size_t i = flen; i < 3; i++)
            frac *= 10;
    }
    if (whole > UINT32_MAX)
        return -ERANGE;
    *ms = whole * 1000 + frac;
    return *ms > 0 ? 0 : -EINVAL;
}

static int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (proto_parse_u64(s, strlen(s), out) < 0 || *out < min || *out > max)
        return -EINVAL;
    return 0;
}

/* ADDR:PORT is checked here so a typo is a one-line error at start-up. */
static int check_host_port(const char *s)
{
    char *host = NULL;
    uint16_t port;
    int rc = net_parse_host_port(s, &host, &port);
    free(host);
    return rc;
}

enum {
    OPT_PORT = 256, OPT_BIND, OPT_PORT_FILE, OPT_WORKERS, OPT_MAX_CONN, OPT_MAX_MEMBERS,
    OPT_MEMBER_TO, OPT_WAIT_TO, OPT_READ_TO, OPT_IDLE_TO, OPT_GRACE, OPT_MAX_HEAD,
    OPT_MAX_BODY, OPT_Q_MSGS, OPT_Q_BYTES, OPT_ALLOW_QUIT, OPT_LOG_LEVEL, OPT_VERSION, OPT_HELP,
    OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_PORT, OPT_TLS_CLIENT_CA, OPT_SECURE_IDS, OPT_AUTH_TOKEN,
    OPT_AUTH_TOKEN_FILE, OPT_MAX_CONNS_PER_IP, OPT_RATE_LIMIT, OPT_LOG_FORMAT, OPT_ACCESS_LOG,
    OPT_METRICS_BIND, OPT_METRICS_PORT_FILE,
};

int config_parse(int argc, char **argv, struct server_config *cfg)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, OPT_PORT},
        {"bind", required_argument, NULL, OPT_BIND},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"max-connections", required_argument, NULL, OPT_MAX_CONN},
        {"max-members", required_argument, NULL, OPT_MAX_MEMBERS},
        {"member-timeout", required_argument, NULL, OPT_MEMBER_TO},
        {"wait-timeout", required_argument, NULL, OPT_WAIT_TO},
        {"read-timeout", required_argument, NULL, OPT_READ_TO},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TO},
        {"shutdown-grace", required_argument, NULL, OPT_GRACE},
        {"max-header-bytes", required_argument, NULL, OPT_MAX_HEAD},
        {"max-body-bytes", required_argument, NULL, OPT_MAX_BODY},
        {"queue-max-msgs", required_argument, NULL, OPT_Q_MSGS},
        {"queue-max-bytes", required_argument, NULL, OPT_Q_BYTES},
        {"allow-quit", no_argument, NULL, OPT_ALLOW_QUIT},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
        {"metrics-bind", required_argument, NULL, OPT_METRICS_BIND},
        {"metrics-port-file", required_argument, NULL, OPT_METRICS_PORT_FILE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-port", required_argument, NULL, OPT_TLS_PORT},
        {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
        {"secure-ids", no_argument, NULL, OPT_SECURE_IDS},
        {"auth-token", required_argument, NULL, OPT_AUTH_TOKEN},
        {"auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE},
        {"max-conns-per-ip", required_argument, NULL, OPT_MAX_CONNS_PER_IP},
        {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int c, idx = -1;
    while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        char name[64];
        if (c != '?' && idx >= 0)
            snprintf(name, sizeof name, "--%s", opts[idx].name);
        else
            snprintf(name, sizeof name, "%s", optind > 1 && optind - 1 < argc ? argv[optind - 1] : "?");
        idx = -1;
        uint64_t v = 0;
        int rc = 0;
        switch (c) {
        case OPT_PORT: rc = parse_size(optarg, 0, 65535, &v); cfg->port = (uint16_t)v; break;
        case OPT_BIND: cfg->bind = optarg; break;
        case OPT_PORT_FILE: cfg->port_file = optarg; break;
        case OPT_WORKERS: rc = parse_size(optarg, 1, 256, &v); cfg->workers = (int)v; break;
        case OPT_MAX_CONN: rc = parse_size(optarg, 1, 10000000, &v); cfg->max_connections = v; break;
        case OPT_MAX_MEMBERS: rc = parse_size(optarg, 1, 10000000, &v); cfg->max_members = v; break;
        case OPT_MEMBER_TO: rc = parse_seconds(optarg, &cfg->member_timeout_ms); break;
        case OPT_WAIT_TO: rc = parse_seconds(optarg, &cfg->wait_timeout_ms); break;
        case OPT_READ_TO: rc = parse_seconds(optarg, &cfg->read_timeout_ms); break;
        case OPT_IDLE_TO: rc = parse_seconds(optarg, &cfg->idle_timeout_ms); break;
        case OPT_GRACE: rc = parse_seconds(optarg, &cfg->shutdown_grace_ms); break;
        case OPT_MAX_HEAD: rc = parse_size(optarg, 256, 1 << 24, &v); cfg->max_head = v; break;
        case OPT_MAX_BODY: rc = parse_size(optarg, 0, 1u << 30, &v); cfg->max_body = v; break;
        case OPT_Q_MSGS: rc = parse_size(optarg, 1, 10000000, &v); cfg->queue_max_msgs = v; break;
        case OPT_Q_BYTES: rc = parse_size(optarg, 1, 1ull << 34, &v); cfg->queue_max_bytes = v; break;
        case OPT_ALLOW_QUIT: cfg->allow_quit = true; break;
        case OPT_LOG_LEVEL: rc = log_level_parse(optarg, &cfg->log_level); break;
        case OPT_LOG_FORMAT: rc = log_format_parse(optarg, &cfg->log_format); break;
        case OPT_ACCESS_LOG: rc = parse_size(optarg, 0, 1000000000, &cfg->access_log_every); break;
        case OPT_METRICS_BIND: cfg->metrics_bind = optarg; rc = check_host_port(optarg); break;
        case OPT_METRICS_PORT_FILE: cfg->metrics_port_file = optarg; break;
        case OPT_TLS_CERT: cfg->tls_cert = optarg; break;
        case OPT_TLS_KEY: cfg->tls_key = optarg; break;
        case OPT_TLS_PORT: rc = parse_size(optarg, 0, 65535, &v); cfg->tls_port = (int)v; break;
        case OPT_TLS_CLIENT_CA: cfg->tls_client_ca = optarg; break;
        case OPT_SECURE_IDS: cfg->secure_ids = true; break;
        case OPT_AUTH_TOKEN: cfg->auth_token = optarg; rc = optarg[0] ? 0 : -EINVAL; break;
        case OPT_AUTH_TOKEN_FILE: cfg->auth_token_file = optarg; break;
        case OPT_MAX_CONNS_PER_IP: rc = parse_size(optarg, 1, 10000000, &v); cfg->max_conns_per_ip = v; break;
        case OPT_RATE_LIMIT: rc = parse_size(optarg, 1, 10000000, &cfg->rate_limit); break;
        case OPT_VERSION: printf("pcsig-server %s\n", PCSIG_VERSION); return CONFIG_EXIT_OK;
        case OPT_HELP: usage(stdout); return CONFIG_EXIT_OK;
        case '?':
        default:
            if (optopt)
                fprintf(stderr, "pcsig-server: option %s needs a value (see --help)\n", name);
            else
                fprintf(stderr, "pcsig-server: unknown option %s (see --help)\n", name);
            return CONFIG_ERROR;
        }
        if (rc < 0) {
            fprintf(stderr, "pcsig-server: bad value '%s' for %s (see --help)\n", optarg, name);
            return CONFIG_ERROR;
        }
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fprintf(stderr, "pcsig-server: --tls-cert and --tls-key go together (see --help)\n");
        return CONFIG_ERROR;
    }
    if (!cfg->tls_cert && (cfg->tls_port >= 0 || cfg->tls_client_ca)) {
        fprintf(stderr, "pcsig-server: --tls-port and --tls-client-ca need --tls-cert and --tls-key\n");
        return CONFIG_ERROR;
    }
    if (cfg->metrics_port_file && !cfg->metrics_bind) {
        fprintf(stderr, "pcsig-server: --metrics-port-file needs --metrics-bind\n");
        return CONFIG_ERROR;
    }
    if (optind < argc) {
        fprintf(stderr, "pcsig-server: unexpected argument '%s' (see --help)\n", argv[optind]);
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}
