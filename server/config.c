/*
 * config: the option table and the three sources that read it.
 *
 * opts[] below is the only list of options: the getopt_long table, the
 * --help text, the config-file keys and the PCSIG_* names are all derived
 * from it, and a value from any source goes through opt_set, which has one
 * parser per kind. Precedence is plain order of application: defaults, then
 * the file, then the environment, then the flags, each overwriting the
 * last. So that --help, --version and a misspelt flag never depend on a
 * readable config file, the flags are scanned (and checked for syntax)
 * first and applied last.
 */
#include "config.h"
#include "cluster_keys.h"
#include "strlit.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "net.h"
#include "proto.h"
#include "response.h"

/* One string owned by a config; they form a list freed by config_free. */
struct config_str {
    struct config_str *next;
    char s[];
};

enum opt_kind {
    OPT_UINT,       /* strict decimal in [min, max], stored as .store says */
    OPT_SECONDS,    /* "30", "0.5": seconds with up to 3 decimals, stored in ms */
    OPT_STRING,     /* copied into the config's storage */
    OPT_LIST,       /* a string; given again in the same source, appended after a ',' */
    OPT_HOST_PORT,  /* ADDR:PORT, [v6]:PORT or name:PORT, checked, then stored as a string */
    OPT_BOOL,       /* --name, --no-name or --name=BOOL; file and environment say true/false */
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    /* Only on the command line (and PCSIG_CONFIG); never a file key. */
    OPT_CONFIG,
    OPT_HELP,
    OPT_VERSION,
};

/* The C type of an OPT_UINT field. */
enum opt_store { ST_U16, ST_INT, ST_SIZE, ST_U64 };

struct config_opt {
    const char *name;  /* --name, the file key, PCSIG_NAME */
    const char *arg;   /* its value in --help; NULL: a flag that takes no value */
    const char *help;  /* --help text; each '\n' starts an indented line */
    enum opt_kind kind;
    enum opt_store store;
    size_t off;        /* where in struct server_config */
    uint64_t min, max; /* OPT_UINT */
    bool nonempty;     /* OPT_STRING: "" is a bad value even on the command line */
};

/*
 * The offset of field f, which must have type T: comparing pointers to
 * distinct types is a diagnostic (an error under -Werror), so a row can not
 * store a value with the wrong width. sizeof does not evaluate it.
 */
#define FIELD(f, T) \
    (offsetof(struct server_config, f) + 0 * sizeof(&((struct server_config *)0)->f == (T *)0))
#define F_U16(f, lo, hi) .kind = OPT_UINT, .store = ST_U16, .off = FIELD(f, uint16_t), .min = (lo), .max = (hi)
#define F_INT(f, lo, hi) .kind = OPT_UINT, .store = ST_INT, .off = FIELD(f, int), .min = (lo), .max = (hi)
#define F_SIZE(f, lo, hi) .kind = OPT_UINT, .store = ST_SIZE, .off = FIELD(f, size_t), .min = (lo), .max = (hi)
#define F_U64(f, lo, hi) .kind = OPT_UINT, .store = ST_U64, .off = FIELD(f, uint64_t), .min = (lo), .max = (hi)
#define F_SECONDS(f) .kind = OPT_SECONDS, .off = FIELD(f, uint64_t)
#define F_STRING(f) .kind = OPT_STRING, .off = FIELD(f, const char *)
#define F_LIST(f) .kind = OPT_LIST, .off = FIELD(f, const char *)
#define F_BOOL(f) .kind = OPT_BOOL, .off = FIELD(f, bool)

/* In --help order. */
static const struct config_opt opts[] = {
    {"port", "N", "TCP port, 0 = any free port (default 8888)", F_U16(port, 0, 65535)},
    {"bind", "ADDR", "address to listen on (default: all, IPv4 and IPv6)", F_STRING(bind)},
    {"port-file", "FILE", "write the bound port to FILE once listening\n"
                          "(default: none)",
     F_STRING(port_file)},
    {"workers", "N", "worker threads (default: number of cores; with --cluster 4 per core, at least 8)", F_INT(workers, 1, 256)},
    {"max-connections", "N", "open connections before new ones get 503\n"
                             "(default: open-file limit minus 64)",
     F_SIZE(max_connections, 1, 10000000)},
    {"max-members", "N", "signed-in members before sign-in gets 503 (default 100000)",
     F_SIZE(max_members, 1, 10000000)},
    {"member-timeout", "SEC", "remove a member with no parked /wait after SEC (default 30)",
     F_SECONDS(member_timeout_ms)},
    {"wait-timeout", "SEC", "answer an idle parked /wait empty after SEC (default 30)",
     F_SECONDS(wait_timeout_ms)},
    {"read-timeout", "SEC", "a started request must complete within SEC, else 408 (default 10)",
     F_SECONDS(read_timeout_ms)},
    {"idle-timeout", "SEC", "close an idle keep-alive connection after SEC (default 60)",
     F_SECONDS(idle_timeout_ms)},
    {"shutdown-grace", "SEC", "on SIGTERM, wait up to SEC for answers to flush (default 5)",
     F_SECONDS(shutdown_grace_ms)},
    {"accept-give-up", "SEC", "stop (exit 1) when accepting has failed for SEC (default 10)",
     F_SECONDS(accept_give_up_ms)},
    {"max-header-bytes", "N", "request line + headers limit, else 431 (default 16384)",
     F_SIZE(max_head, 256, 1 << 24)},
    {"max-body-bytes", "N", "request body limit, else 413 (default 4194304)",
     F_SIZE(max_body, 0, 1u << 30)},
    {"queue-max-msgs", "N", "messages queued per member, else 503 (default 1000)",
     F_SIZE(queue_max_msgs, 1, 10000000)},
    {"queue-max-bytes", "N", "message bytes queued per member, else 503 (default 16777216)",
     F_SIZE(queue_max_bytes, 1, 1ull << 34)},
    {"max-output-bytes", "N", "answer bytes held for one connection; a bigger answer\n"
                              "(a sign-in's member list) gets 503 (default 67108864)",
     F_SIZE(max_output_bytes, 65536, 1ull << 34)},
    {"max-total-output-bytes", "N", "answer bytes held for clients that have not read them,\n"
                                    "all connections together; past it the connections that\n"
                                    "stalled longest are closed, and a big answer that does\n"
                                    "not fit gets 503 (default 134217728)",
     F_SIZE(max_total_output_bytes, 65536, 1ull << 40)},
    {"allow-quit", NULL, "let GET /quit stop the server (default: off, /quit gets 403)",
     F_BOOL(allow_quit)},
    {"tls-cert", "FILE", "PEM certificate chain: serve TLS (on --tls-port if\n"
                         "given, else on --port) (default: none, plain HTTP)",
     F_STRING(tls_cert)},
    {"tls-key", "FILE", "PEM private key of --tls-cert (default: none)\n"
                        "SIGHUP re-reads certificate and key without dropping anyone",
     F_STRING(tls_key)},
    {"tls-port", "N", "a TLS listener beside the plain one (0 = any free port)\n"
                      "(default: none: TLS, if on, is on --port)",
     F_INT(tls_port, 0, 65535)},
    {"tls-client-ca", "FILE", "require client certificates signed by this CA (mutual TLS)\n"
                              "(default: none, no client certificate asked for)",
     F_STRING(tls_client_ca)},
    {"secure-ids", NULL, "give each member a secret token at sign-in (header\n"
                         "X-Pcsig-Token); /wait, /message, /sign_out must carry it\n"
                         "(same header, or token= in the query), else 403\n"
                         "(default: off)",
     F_BOOL(secure_ids)},
    {"auth-token", "TOKEN", "/sign_in needs 'Authorization: Bearer TOKEN', else 401\n"
                            "(default: none, sign-in open to all)",
     F_STRING(auth_token), .nonempty = true},
    {"auth-token-file", "FILE", "the same with any token of FILE (one per line)\n"
                                "(default: none)",
     F_STRING(auth_token_file)},
    {"max-conns-per-ip", "N", "open connections per client address, else 429 (default: off)",
     F_SIZE(max_conns_per_ip, 1, 10000000)},
    {"rate-limit", "N", "requests per second per client address (burst 2N),\n"
                        "else 429 (default: off)",
     F_U64(rate_limit, 1, 10000000)},
    {"web", NULL, "serve the browser page (/, /app.js, /app.css, /config.json)\n"
                  "(default: on; --no-web: those paths are 404)",
     F_BOOL(web)},
    {"web-root", "DIR", "serve the page's files from DIR instead of the copy built\n"
                        "into the binary (default: none, the built-in page)",
     F_STRING(web_root), .nonempty = true},
    {"ice-server", "URL", "a STUN/TURN server for the page's calls (stun:, stuns:,\n"
                          "turn:, turns:); repeat it or separate URLs with ','\n"
                          "(default: none: loopback and LAN calls need none)",
     F_LIST(ice_servers)},
    {"ice-username", "NAME", "TURN username handed to the page with --ice-server\n"
                             "(default: none)",
     F_STRING(ice_username), .nonempty = true},
    {"ice-credential", "SECRET", "TURN password handed to the page (default: none)",
     F_STRING(ice_credential), .nonempty = true},
    {"ice-secret", "SECRET", "TURN REST shared secret: the page gets a username valid\n"
                             "for 24 h and its HMAC-SHA1 as password; wins over\n"
                             "--ice-username/--ice-credential (default: none)",
     F_STRING(ice_secret), .nonempty = true},
    {"cluster", "URL", "redis://HOST:PORT[/DB]: share members, queues and ids\n"
                       "with every instance using this Redis (default: none,\n"
                       "a single server)",
     F_STRING(cluster), .nonempty = true},
    {"cluster-password", "SECRET", "Redis AUTH password for --cluster (default: none)",
     F_STRING(cluster_password), .nonempty = true},
    {"cluster-password-file", "FILE", "the same, read from the first line of FILE\n"
                                      "(wins over --cluster-password) (default: none)",
     F_STRING(cluster_password_file)},
    {"instance-name", "NAME", "this instance's name in the cluster (logs, Redis keys)\n"
                              "(default: host:port)",
     F_STRING(instance_name), .nonempty = true},
    {"cluster-timeout", "SEC", "give up on a Redis command after SEC: the request gets\n"
                               "503 (default 2)",
     F_SECONDS(cluster_timeout_ms)},
    {"cluster-lease", "SEC", "an instance whose heartbeat (every 0.5 s) stops for SEC\n"
                             "is taken for dead: its parked members' clocks start;\n"
                             "at least 1 (default 3)",
     F_SECONDS(cluster_lease_ms)},
    {"log-level", "LEVEL", "error, warn, info or debug (default info)", .kind = OPT_LOG_LEVEL,
     .off = FIELD(log_level, enum log_level)},
    {"log-format", "FORMAT", "text or json (one object per line) (default text)",
     .kind = OPT_LOG_FORMAT, .off = FIELD(log_format, enum log_format)},
    {"access-log", "N", "log one request in N at info level, 0 = off (default 0)",
     F_U64(access_log_every, 0, 1000000000)},
    {"metrics-bind", "ADDR:PORT", "serve /health and /metrics only there, in plain HTTP\n"
                                  "([::1]:9100, 127.0.0.1:9100, localhost:0 = any free\n"
                                  "port) (default: on the main ports)",
     .kind = OPT_HOST_PORT, .off = FIELD(metrics_bind, const char *)},
    {"metrics-port-file", "FILE", "write the bound metrics port to FILE once listening\n"
                                  "(default: none)",
     F_STRING(metrics_port_file)},
    {"config", "FILE", "read 'name = value' lines from FILE (or from $PCSIG_CONFIG);\n"
                       "every option also reads PCSIG_<NAME> (PCSIG_TLS_CERT ...);\n"
                       "a flag beats the environment, which beats the file\n"
                       "(default: none)",
     .kind = OPT_CONFIG},
    {"version", NULL, "print the version", .kind = OPT_VERSION},
    {"help", NULL, "this text", .kind = OPT_HELP},
};
#define NOPTS (sizeof opts / sizeof opts[0])

#define HELP_COL 25 /* --help text starts in this column */

/* One --help row: "  --" prefix name [" " arg], then help, whose '\n's start
 * lines indented to HELP_COL. */
static void usage_row(FILE *f, const char *prefix, const char *name, const char *arg,
                      const char *help)
{
    int w = fprintf(f, "  --%s%s%s%s", prefix, name, arg ? " " : "", arg ? arg : "");
    fprintf(f, "%*s", w >= 0 && w < HELP_COL ? HELP_COL - w : 2, "");
    for (const char *p = help;;) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fprintf(f, "%s\n", p);
            break;
        }
        fprintf(f, "%.*s\n%*s", (int)(nl - p), p, HELP_COL, "");
        p = nl + 1;
    }
}

/*
 * The --no-NAME row of a boolean: the way back to off when the file or
 * PCSIG_<NAME> turned it on (a bare flag alone could only say "on").
 */
static void usage_no_row(FILE *f, const char *name)
{
    buf_t help;
    buf_init(&help, 1024);
    if (buf_printf(&help, "turn --%s off, whatever the environment or the\n"
                          "file say; --%s=BOOL sets it either way (BOOL:\n"
                          "true/false, yes/no, 1/0)", name, name) == 0)
        usage_row(f, "no-", name, NULL, help.data);
    buf_free(&help);
}

static void usage(FILE *f)
{
    fputs("usage: pcsig-server [options]\n"
          "A peerconnection signaling server (wire-compatible with WebRTC's\n"
          "peerconnection_server).\n\n", f);
    for (size_t i = 0; i < NOPTS; i++) {
        const struct config_opt *o = &opts[i];
        usage_row(f, "", o->name, o->arg, o->help);
        if (o->kind == OPT_BOOL)
            usage_no_row(f, o->name);
    }
}

/* The option named exactly name[0..n) (no abbreviations), or NULL. */
static const struct config_opt *opt_find(const char *name, size_t n)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].name) == n && memcmp(opts[i].name, name, n) == 0)
            return &opts[i];
    }
    return NULL;
}

/* Options the file and the environment may set: not config, help, version. */
static bool opt_is_setting(const struct config_opt *o)
{
    return o->kind < OPT_CONFIG;
}

/* ---- one parser per kind ------------------------------------------------ */

/* Seconds with up to three decimals ("30", "0.5") into milliseconds, > 0. */
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
    if (whole * 1000 + frac == 0)
        return -EINVAL;
    *ms = whole * 1000 + frac;
    return 0;
}

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (proto_parse_u64(s, strlen(s), &v) < 0 || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Store v in a field of the given type; -ERANGE when it does not fit there. */
static int store_uint(void *field, enum opt_store st, uint64_t v)
{
    switch (st) {
    case ST_U16:
        if (v > UINT16_MAX)
            return -ERANGE;
        *(uint16_t *)field = (uint16_t)v;
        return 0;
    case ST_INT:
        if (v > INT_MAX)
            return -ERANGE;
        *(int *)field = (int)v;
        return 0;
    case ST_SIZE:
        if ((uint64_t)(size_t)v != v) /* 32-bit size_t */
            return -ERANGE;
        *(size_t *)field = (size_t)v;
        return 0;
    case ST_U64:
        *(uint64_t *)field = v;
        return 0;
    }
    return -EINVAL;
}

/* The spellings a service manager or a shell script is likely to use. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

#define CONFIG_SHOW_MAX 200 /* input bytes of an echoed value shown in an error */

/*
 * Untrusted bytes s[0..n) made printable for an error line, so that a
 * value from a file or the environment cannot put terminal escapes or line
 * breaks on stderr: log_escape's rules (\xNN for control and high-bit
 * bytes, at most CONFIG_SHOW_MAX of them, then "..."). The text lives in b,
 * which this initialises and the caller releases with buf_free.
 */
static const char *shown(buf_t *b, const char *s, size_t n)
{
    buf_init(b, 4 * CONFIG_SHOW_MAX + 8);
    if (log_escape(b, s, n, CONFIG_SHOW_MAX) < 0 || buf_append(b, "", 1) < 0)
        return "?";
    return b->data;
}

/* A copy of s owned by cfg (freed by config_free), or NULL when out of memory. */
static const char *config_strdup(struct server_config *cfg, const char *s)
{
    size_t n = strlen(s) + 1;
    struct config_str *c = malloc(sizeof *c + n);
    if (!c)
        return NULL;
    memcpy(c->s, s, n);
    c->next = cfg->owned;
    cfg->owned = c;
    return c->s;
}

/*
 * Parse val for option o and store it in cfg. val is NULL only for a flag
 * given without a value (OPT_BOOL on the command line: true). Nothing is
 * stored on failure. Returns 0, -EINVAL/-ERANGE (a bad value) or -ENOMEM.
 */
static int opt_set(struct server_config *cfg, const struct config_opt *o, const char *val)
{
    void *field = (char *)cfg + o->off;
    uint64_t v;
    int rc;
    if (!val && o->kind != OPT_BOOL)
        return -EINVAL;
    switch (o->kind) {
    case OPT_UINT:
        if ((rc = parse_uint(val, o->min, o->max, &v)) < 0)
            return rc;
        return store_uint(field, o->store, v);
    case OPT_SECONDS:
        return parse_seconds(val, (uint64_t *)field);
    case OPT_STRING:
    case OPT_LIST: {
        if ((o->nonempty || o->kind == OPT_LIST) && val[0] == '\0')
            return -EINVAL;
        const char *copy = config_strdup(cfg, val);
        if (!copy)
            return -ENOMEM;
        *(const char **)field = copy;
        return 0;
    }
    case OPT_HOST_PORT: {
        /* Checked here so that a typo is a one-line error at start-up. */
        char *host = NULL;
        uint16_t port;
        rc = net_parse_host_port(val, &host, &port);
        free(host);
        if (rc < 0)
            return rc;
        const char *copy = config_strdup(cfg, val);
        if (!copy)
            return -ENOMEM;
        *(const char **)field = copy;
        return 0;
    }
    case OPT_BOOL:
        if (!val) {
            *(bool *)field = true;
            return 0;
        }
        return parse_bool(val, (bool *)field);
    case OPT_LOG_LEVEL:
        return log_level_parse(val, (enum log_level *)field);
    case OPT_LOG_FORMAT:
        return log_format_parse(val, (enum log_format *)field);
    case OPT_CONFIG:
    case OPT_HELP:
    case OPT_VERSION:
        break;
    }
    return -EINVAL;
}

/*
 * opt_set, except that an OPT_LIST given before in the same source (*seen)
 * gets val appended after a ',' instead of replaced: "--ice-server A
 * --ice-server B" is both, while a flag still replaces the file's list.
 */
static int opt_set_in_source(struct server_config *cfg, const struct config_opt *o,
                             const char *val, bool *seen)
{
    bool *was = &seen[o - opts];
    /* Only a list's field is a string: reading another kind's as one is
     * a misaligned load (UBSan stopped --log-level loud). */
    const char *old = o->kind == OPT_LIST ? *(const char **)((char *)cfg + o->off) : NULL;
    if (o->kind != OPT_LIST || !*was || !old || !val) {
        *was = true;
        return opt_set(cfg, o, val);
    }
    if (val[0] == '\0')
        return -EINVAL;
    buf_t joined;
    buf_init(&joined, strlen(old) + strlen(val) + 2);
    int rc = buf_printf(&joined, "%s,%s", old, val);
    if (rc == 0)
        rc = opt_set(cfg, o, joined.data);
    buf_free(&joined);
    return rc;
}

/* ---- the command line ---------------------------------------------------- */

/*
 * getopt_long returns OPT_VAL_BASE + the row for --NAME, and OPT_NO_BASE +
 * the row for --no-NAME of a boolean; both are above any char, which it
 * returns ('?') for an error.
 */
#define OPT_VAL_BASE 256
#define OPT_NO_BASE (OPT_VAL_BASE + (int)NOPTS)

/* A flag seen on the command line, applied after the file and the environment. */
struct flag {
    const struct config_opt *o;
    const char *val; /* into argv, or "false" for --no-NAME; NULL for a bare flag */
};

/*
 * The getopt_long table: every row as --NAME (a boolean takes an optional
 * =BOOL), then --no-NAME for each boolean. The "no-" names live in *names
 * (the caller frees it). NULL when out of memory.
 */
static struct option *build_longopts(char **names)
{
    size_t room = 0;
    for (size_t i = 0; i < NOPTS; i++)
        room += opts[i].kind == OPT_BOOL ? sizeof "no-" + strlen(opts[i].name) : 0;
    struct option *lo = calloc(2 * NOPTS + 1, sizeof *lo);
    char *p = *names = malloc(room + 1);
    if (!lo || !p) {
        free(lo);
        free(p);
        *names = NULL;
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        int has = opts[i].arg ? required_argument
                  : opts[i].kind == OPT_BOOL ? optional_argument : no_argument;
        lo[n++] = (struct option){opts[i].name, has, NULL, OPT_VAL_BASE + (int)i};
    }
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].kind != OPT_BOOL)
            continue;
        size_t len = strlen(opts[i].name);
        memcpy(p, STRLIT("no-"));
        memcpy(p + STRLIT_LEN("no-"), opts[i].name, len + 1);
        lo[n++] = (struct option){p, no_argument, NULL, OPT_NO_BASE + (int)i};
        p += STRLIT_LEN("no-") + len + 1;
    }
    lo[n] = (struct option){NULL, 0, NULL, 0};
    return lo;
}

/* The one-line error for what getopt_long refused (it returned '?' or ':'). */
static void report_getopt_error(int argc, char **argv, FILE *err)
{
    const char *name = optind > 1 && optind - 1 < argc ? argv[optind - 1] : "?";
    if (optopt >= OPT_NO_BASE && optopt < OPT_NO_BASE + (int)NOPTS) {
        fprintf(err, "pcsig-server: option --no-%s takes no value (see --help)\n",
                opts[optopt - OPT_NO_BASE].name);
        return;
    }
    const struct config_opt *known =
        optopt >= OPT_VAL_BASE && optopt < OPT_NO_BASE ? &opts[optopt - OPT_VAL_BASE] : NULL;
    if (known && !known->arg) {
        fprintf(err, "pcsig-server: option --%s takes no value (see --help)\n", known->name);
        return;
    }
    buf_t b;
    fprintf(err, known ? "pcsig-server: option %s needs a value (see --help)\n"
                       : "pcsig-server: unknown option %s (see --help)\n",
            shown(&b, name, strlen(name)));
    buf_free(&b);
}

/*
 * Check the command line's syntax and collect its flags into out (room for
 * argc) without applying them; *config_path is the last --config. Handles
 * --help and --version. Returns CONFIG_OK, CONFIG_EXIT_OK or CONFIG_ERROR.
 */
static int scan_flags(int argc, char **argv, struct flag *out, size_t *nout,
                      const char **config_path, FILE *err)
{
    char *no_names = NULL;
    struct option *longopts = build_longopts(&no_names);
    if (!longopts) {
        fprintf(err, "pcsig-server: out of memory\n");
        return CONFIG_ERROR;
    }
    opterr = 0;
    optind = 0; /* 0, not 1: glibc and musl then forget a previous parse entirely */
    *nout = 0;
    int c, rc = CONFIG_OK;
    while (rc == CONFIG_OK && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c >= OPT_NO_BASE && c < OPT_NO_BASE + (int)NOPTS) {
            out[(*nout)++] = (struct flag){&opts[c - OPT_NO_BASE], "false"};
            continue;
        }
        if (c < OPT_VAL_BASE || c >= OPT_NO_BASE) {
            report_getopt_error(argc, argv, err);
            rc = CONFIG_ERROR;
            break;
        }
        const struct config_opt *o = &opts[c - OPT_VAL_BASE];
        switch (o->kind) {
        case OPT_HELP:
            usage(stdout);
            rc = CONFIG_EXIT_OK;
            break;
        case OPT_VERSION:
            printf("pcsig-server %s\n", PCSIG_VERSION);
            rc = CONFIG_EXIT_OK;
            break;
        case OPT_CONFIG:
            *config_path = optarg;
            break;
        default:
            /* optarg: the value, or for a boolean its optional =BOOL (NULL: on). */
            out[(*nout)++] = (struct flag){o, optarg};
            break;
        }
    }
    if (rc == CONFIG_OK && optind < argc) {
        buf_t b;
        fprintf(err, "pcsig-server: unexpected argument '%s' (see --help)\n",
                shown(&b, argv[optind], strlen(argv[optind])));
        buf_free(&b);
        rc = CONFIG_ERROR;
    }
    free(longopts);
    free(no_names);
    return rc;
}

static int apply_flags(struct server_config *cfg, const struct flag *flags, size_t n, FILE *err)
{
    bool seen[NOPTS] = {false};
    for (size_t i = 0; i < n; i++) {
        int rc = opt_set_in_source(cfg, flags[i].o, flags[i].val, seen);
        if (rc == -ENOMEM) {
            fprintf(err, "pcsig-server: out of memory\n");
            return CONFIG_ERROR;
        }
        if (rc < 0) {
            const char *v = flags[i].val ? flags[i].val : "";
            buf_t b;
            fprintf(err, "pcsig-server: bad value '%s' for --%s (see --help)\n",
                    shown(&b, v, strlen(v)), flags[i].o->name);
            buf_free(&b);
            return CONFIG_ERROR;
        }
    }
    return CONFIG_OK;
}

/* ---- the environment ------------------------------------------------------ */

/* The value of "PCSIG_" + name upper-cased with '-' as '_' in envp (the first,
 * as getenv), or NULL; *name_len is the variable name's length. */
static const char *env_find(char *const *envp, const char *name, int *name_len)
{
    static const char prefix[] = "PCSIG_";
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *p = e + sizeof prefix - 1;
        const char *n = name;
        for (; *n; n++, p++) {
            char want = *n == '-' ? '_' : (*n >= 'a' && *n <= 'z') ? (char)(*n - 'a' + 'A') : *n;
            if (*p != want)
                break;
        }
        if (*n == '\0' && *p == '=') {
            *name_len = (int)(p - e);
            return p + 1;
        }
    }
    return NULL;
}

/* PCSIG_CONFIG: *path stays NULL when unset. */
static int env_config_path(char *const *envp, const char **path, FILE *err)
{
    int len;
    const char *val = env_find(envp, "config", &len);
    if (val && val[0] == '\0') {
        fprintf(err, "pcsig-server: empty value in PCSIG_CONFIG\n");
        return CONFIG_ERROR;
    }
    *path = val;
    return CONFIG_OK;
}

/* Each option's PCSIG_ variable; a variable that names no option is never looked at. */
static int load_env(struct server_config *cfg, char *const *envp, FILE *err)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const struct config_opt *o = &opts[i];
        int len;
        const char *val = opt_is_setting(o) ? env_find(envp, o->name, &len) : NULL;
        if (!val)
            continue;
        const char *var = val - len - 1; /* "PCSIG_NAME=value": len bytes of name */
        if (val[0] == '\0') {
            fprintf(err, "pcsig-server: empty value in %.*s\n", len, var);
            return CONFIG_ERROR;
        }
        int rc = opt_set(cfg, o, val);
        if (rc == -ENOMEM) {
            fprintf(err, "pcsig-server: out of memory\n");
            return CONFIG_ERROR;
        }
        if (rc < 0) {
            buf_t b;
            fprintf(err, "pcsig-server: bad value '%s' in %.*s\n", shown(&b, val, strlen(val)),
                    len, var);
            buf_free(&b);
            return CONFIG_ERROR;
        }
    }
    return CONFIG_OK;
}

/* ---- the file ------------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Read all of path into text, NUL-terminated after text->len: 0, -errno, or
 * -EFBIG past CONFIG_MAX_FILE_BYTES. */
static int read_config_file(const char *path, buf_t *text)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = buf_read_fd(text, fd);
    close(fd);
    /* text's maximum is one byte over the limit, so a longer file is seen. */
    if (rc == -E2BIG || (rc == 0 && text->len > CONFIG_MAX_FILE_BYTES))
        rc = -EFBIG;
    if (rc == 0)
        rc = buf_append(text, "", 1) < 0 ? -ENOMEM : 0; /* room kept by the maximum */
    if (rc == 0)
        text->len--; /* the NUL is after the text, not in it */
    return rc;
}

/*
 * One line line[0..len) of the file (line[len] is writable: the '\n' or the
 * final NUL). Comment lines and blank lines are skipped; otherwise
 * "key = value" with both sides trimmed, the value unquoted if it is
 * "quoted". Values are NUL-terminated in place. path is the file's name as
 * errors show it (already escaped); the key and the value are the file's
 * bytes, escaped when an error echoes them.
 */
static int file_line(struct server_config *cfg, const char *path, unsigned lineno, char *line,
                     size_t len, bool *seen, FILE *err)
{
    if (memchr(line, '\0', len)) {
        fprintf(err, "pcsig-server: %s:%u: NUL byte in the line\n", path, lineno);
        return CONFIG_ERROR;
    }
    char *p = line, *end = line + len;
    while (p < end && is_blank(*p))
        p++;
    if (p == end || *p == '#')
        return CONFIG_OK;
    char *eq = memchr(p, '=', (size_t)(end - p));
    char *key_end = eq;
    while (key_end && key_end > p && is_blank(key_end[-1]))
        key_end--;
    if (!eq || key_end == p) {
        fprintf(err, "pcsig-server: %s:%u: expected 'key = value'\n", path, lineno);
        return CONFIG_ERROR;
    }
    buf_t b; /* for the escaped key or value of an error */
    char *val = eq + 1;
    while (val < end && is_blank(*val))
        val++;
    while (end > val && is_blank(end[-1]))
        end--;
    int key_len = (int)(key_end - p);
    if (end > val && *val == '"') {
        if (end - val < 2 || end[-1] != '"') {
            fprintf(err, "pcsig-server: %s:%u: the value of '%s' has no closing '\"'\n",
                    path, lineno, shown(&b, p, (size_t)key_len));
            buf_free(&b);
            return CONFIG_ERROR;
        }
        val++;
        end--;
    }
    *end = '\0';
    const struct config_opt *o = opt_find(p, (size_t)key_len);
    if (!o || !opt_is_setting(o)) {
        fprintf(err, "pcsig-server: %s:%u: unknown key '%s'\n", path, lineno,
                shown(&b, p, (size_t)key_len));
        buf_free(&b);
        return CONFIG_ERROR;
    }
    if (*val == '\0') {
        fprintf(err, "pcsig-server: %s:%u: empty value for '%s'\n", path, lineno, o->name);
        return CONFIG_ERROR;
    }
    int rc = opt_set_in_source(cfg, o, val, seen);
    if (rc == -ENOMEM) {
        fprintf(err, "pcsig-server: out of memory\n");
        return CONFIG_ERROR;
    }
    if (rc < 0) {
        fprintf(err, "pcsig-server: %s:%u: bad value '%s' for '%s'\n", path, lineno,
                shown(&b, val, strlen(val)), o->name);
        buf_free(&b);
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

/* Read the file at path, named by source ("--config" or "PCSIG_CONFIG"). */
static int load_file(struct server_config *cfg, const char *source, const char *path, FILE *err)
{
    buf_t text, name;
    buf_init(&text, (size_t)CONFIG_MAX_FILE_BYTES + 1);
    const char *where = shown(&name, path, strlen(path));
    int rc = read_config_file(path, &text);
    if (rc == -EFBIG) {
        fprintf(err, "pcsig-server: %s %s: larger than %d bytes\n", source, where,
                CONFIG_MAX_FILE_BYTES);
    } else if (rc < 0) {
        char tmp[128];
        fprintf(err, "pcsig-server: %s %s: %s\n", source, where,
                log_strerror(-rc, tmp, sizeof tmp));
    }
    size_t pos = 0;
    unsigned lineno = 0;
    bool seen[NOPTS] = {false};
    while (rc == 0 && pos < text.len) {
        char *line = text.data + pos;
        char *nl = memchr(line, '\n', text.len - pos);
        size_t len = nl ? (size_t)(nl - line) : text.len - pos;
        pos += len + (nl ? 1 : 0);
        lineno++;
        if (len > CONFIG_MAX_LINE) {
            fprintf(err, "pcsig-server: %s:%u: line longer than %d bytes\n", where, lineno,
                    CONFIG_MAX_LINE);
            rc = CONFIG_ERROR;
        } else {
            rc = file_line(cfg, where, lineno, line, len, seen, err);
        }
    }
    buf_free(&text);
    buf_free(&name);
    return rc < 0 ? CONFIG_ERROR : CONFIG_OK;
}

/* ---- all together ----------------------------------------------------------- */

/* Fill cfg with the defaults. Allocates nothing (config_free is a no-op on it). */
static void config_defaults(struct server_config *cfg)
{
    *cfg = (struct server_config){
        .bind = NULL,
        .port = 8888,
        .workers = 0, /* 0: chosen by config_default_workers once all is read */
        .max_connections = 0, /* 0: derived from the open-file limit at start */
        .max_members = 100000,
        .member_timeout_ms = 30000,
        .wait_timeout_ms = 30000,
        .read_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .shutdown_grace_ms = 5000,
        .accept_give_up_ms = 10000,
        .cluster_timeout_ms = 2000,
        .cluster_lease_ms = 3000,
        .max_head = 16 * 1024,
        .max_body = 4 * 1024 * 1024,
        .queue_max_msgs = 1000,
        .queue_max_bytes = 16 * 1024 * 1024,
        /* 100,000 members (the default cap) with 512-byte names fit in one
         * answer; two such answers held for clients that do not read them
         * are all the memory that unread output may take. */
        .max_output_bytes = 64 * 1024 * 1024,
        .max_total_output_bytes = 128 * 1024 * 1024,
        .allow_quit = false,
        .log_level = LOG_INFO,
        .tls_port = -1,
        .web = true,
    };
}

/*
 * --ice-server: each ','-separated URL is scheme:rest with a scheme browsers
 * accept (RFC 7064, 7065) and a rest of printable ASCII without quotes,
 * backslashes or spaces (it is written into JSON for the page as is); TURN
 * needs credentials, from --ice-username/--ice-credential or --ice-secret.
 */
static int check_ice(const struct server_config *cfg, FILE *err)
{
    static const char *const schemes[] = {"stun:", "stuns:", "turn:", "turns:"};
    bool turn = false;
    for (const char *p = cfg->ice_servers; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t skip = 0;
        for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && !skip; i++) {
            size_t n = strlen(schemes[i]);
            if (len > n && strncasecmp(p, schemes[i], n) == 0) {
                skip = n;
                turn = turn || i >= 2;
            }
        }
        const char *why = len == 0 ? "an empty URL (two commas, or one at an end)"
                          : skip   ? NULL
                                   : "not a stun:, stuns:, turn: or turns: URL";
        for (size_t i = skip; i < len && !why; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\')
                why = "a space, quote, backslash or control byte in the URL";
        }
        if (why) {
            buf_t b;
            fprintf(err, "pcsig-server: bad value '%s' for --ice-server: %s\n",
                    shown(&b, p, len), why);
            buf_free(&b);
            return CONFIG_ERROR;
        }
        p += len + (end ? 1 : 0);
        if (end && !*p) {
            fprintf(err, "pcsig-server: bad value for --ice-server: an empty URL after the last ','\n");
            return CONFIG_ERROR;
        }
    }
    size_t ice_bytes = (cfg->ice_servers ? strlen(cfg->ice_servers) : 0) +
                       (cfg->ice_username ? strlen(cfg->ice_username) : 0) +
                       (cfg->ice_credential ? strlen(cfg->ice_credential) : 0);
    if (ice_bytes > CONFIG_ICE_MAX_BYTES) {
        fprintf(err, "pcsig-server: --ice-server, --ice-username and --ice-credential hold %zu "
                     "bytes together; at most %d fit in the page's /config.json\n",
                ice_bytes, CONFIG_ICE_MAX_BYTES);
        return CONFIG_ERROR;
    }
    if ((cfg->ice_username == NULL) != (cfg->ice_credential == NULL)) {
        fprintf(err, "pcsig-server: --ice-username and --ice-credential go together\n");
        return CONFIG_ERROR;
    }
    if (turn && !cfg->ice_username && !cfg->ice_secret) {
        fprintf(err, "pcsig-server: a turn: or turns: --ice-server needs --ice-username and\n"
                     "--ice-credential, or --ice-secret\n");
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

/* The checks between options, on the merged result of every source. */
static int check_combinations(const struct server_config *cfg, FILE *err)
{
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fprintf(err, "pcsig-server: --tls-cert and --tls-key go together (see --help)\n");
        return CONFIG_ERROR;
    }
    if (!cfg->tls_cert && (cfg->tls_port >= 0 || cfg->tls_client_ca)) {
        fprintf(err, "pcsig-server: --tls-port and --tls-client-ca need --tls-cert and --tls-key\n");
        return CONFIG_ERROR;
    }
    if (cfg->metrics_port_file && !cfg->metrics_bind) {
        fprintf(err, "pcsig-server: --metrics-port-file needs --metrics-bind\n");
        return CONFIG_ERROR;
    }
    if (cfg->max_output_bytes > cfg->max_total_output_bytes) {
        /* An answer within the one would never fit in the other. */
        fprintf(err, "pcsig-server: --max-output-bytes %zu is over --max-total-output-bytes %zu\n",
                cfg->max_output_bytes, cfg->max_total_output_bytes);
        return CONFIG_ERROR;
    }
    if ((cfg->cluster_password || cfg->cluster_password_file || cfg->instance_name) &&
        !cfg->cluster) {
        fprintf(err, "pcsig-server: --cluster-password, --cluster-password-file and "
                     "--instance-name need --cluster\n");
        return CONFIG_ERROR;
    }
    if (cfg->cluster_lease_ms < 1000) {
        /* A lease of under two heartbeats (0.5 s each): one late heartbeat would
         * have a live instance taken for dead. */
        fprintf(err, "pcsig-server: --cluster-lease must be at least 1 (seconds)\n");
        return CONFIG_ERROR;
    }
    if (cfg->cluster) {
        struct ckey_url url;
        const char *why = "";
        if (ckey_parse_url(cfg->cluster, &url, &why) < 0) {
            buf_t b;
            fprintf(err, "pcsig-server: --cluster '%s': %s (redis://HOST:PORT[/DB])\n",
                    shown(&b, cfg->cluster, strlen(cfg->cluster)), why);
            buf_free(&b);
            return CONFIG_ERROR;
        }
    }
    return check_ice(cfg, err);
}

/*
 * The worker count when none was given: one per core; with --cluster four
 * per core and at least 8, because there a worker blocks on each Redis
 * round trip (measured on 2 cores: p50 481 ms on 2 workers, 4.1 ms on 8).
 */
static int config_default_workers(const struct server_config *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int cores = ncpu > 0 && ncpu < 64 ? (int)ncpu : 2;
    if (!cfg->cluster)
        return cores;
    return cores * 4 > 8 ? cores * 4 : 8;
}

int config_load(struct server_config *cfg, int argc, char **argv, char *const *envp, FILE *err)
{
    config_defaults(cfg);
    /* Every flag fits: argc bounds how many there can be. */
    struct flag *flags = calloc(argc > 0 ? (size_t)argc : 1, sizeof *flags);
    if (!flags) {
        fprintf(err, "pcsig-server: out of memory\n");
        return CONFIG_ERROR;
    }
    size_t nflags = 0;
    const char *path = NULL, *source = "--config";
    int rc = scan_flags(argc, argv, flags, &nflags, &path, err);
    if (rc == CONFIG_OK && !path) {
        source = "PCSIG_CONFIG";
        rc = env_config_path(envp, &path, err);
    }
    if (rc == CONFIG_OK && path)
        rc = load_file(cfg, source, path, err);
    if (rc == CONFIG_OK)
        rc = load_env(cfg, envp, err);
    if (rc == CONFIG_OK)
        rc = apply_flags(cfg, flags, nflags, err);
    if (rc == CONFIG_OK)
        rc = check_combinations(cfg, err);
    if (rc == CONFIG_OK && cfg->workers == 0)
        cfg->workers = config_default_workers(cfg);
    free(flags);
    if (rc != CONFIG_OK)
        config_free(cfg);
    return rc;
}

/* ---- before start-up: what the values name must be there ------------------ */

/*
 * Whether host is written as a numeric address (only digits and dots, or
 * any ':'). Such a value must parse as one: "300.1.1.1" is a typo to report
 * at once, not a host name to look up in the DNS.
 */
static bool looks_numeric(const char *host)
{
    if (strchr(host, ':'))
        return true;
    for (; *host; host++) {
        if (*host != '.' && (*host < '0' || *host > '9'))
            return false;
    }
    return true;
}

/*
 * Whether ai's address is one of this host's: a socket binds to it (on port
 * 0, so a port in use does not matter). Only EADDRNOTAVAIL says no; any
 * other failure is left for listening to report.
 */
static bool is_local_address(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    bool local = bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno != EADDRNOTAVAIL;
    close(fd);
    return local;
}

/*
 * The host of --opt (whose whole value is value) must resolve to IPv4 or
 * IPv6 addresses of this host, as net_listen will need every one of them:
 * else the one-line error. NULL, ""
 * and "*" are every interface, as for net_listen.
 */
static int check_address(const char *opt, const char *value, const char *host, FILE *err)
{
    if (!host || host[0] == '\0' || strcmp(host, "*") == 0)
        return CONFIG_OK;
    bool numeric = looks_numeric(host);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | (numeric ? AI_NUMERICHOST : 0);
    int rc = getaddrinfo(host, NULL, &hints, &res);
    bool found = false, foreign = false;
    for (const struct addrinfo *ai = rc == 0 ? res : NULL; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        found = true;
        foreign = foreign || !is_local_address(ai);
    }
    if (res)
        freeaddrinfo(res);
    if (found && !foreign)
        return CONFIG_OK;
    const char *why = foreign ? "not an address of this host"
                      : numeric ? "not an IPv4 or IPv6 address"
                      : rc == 0 ? "no IPv4 or IPv6 address"
                      : rc == EAI_SYSTEM ? "cannot resolve the name"
                                         : gai_strerror(rc);
    buf_t b;
    fprintf(err, "pcsig-server: bad value '%s' for --%s: %s\n", shown(&b, value, strlen(value)),
            opt, why);
    buf_free(&b);
    return CONFIG_ERROR;
}

/* --metrics-bind ADDR:PORT: its ADDR as check_address sees it. */
static int check_metrics_address(const char *spec, FILE *err)
{
    if (!spec)
        return CONFIG_OK;
    char *host = NULL;
    uint16_t port;
    if (net_parse_host_port(spec, &host, &port) < 0) {
        /* opt_set checked the syntax: only an allocation can fail here. */
        fprintf(err, "pcsig-server: out of memory\n");
        return CONFIG_ERROR;
    }
    int rc = check_address("metrics-bind", spec, host, err);
    free(host);
    return rc;
}

/* "pcsig-server: --opt path: strerror(e)" on err: CONFIG_ERROR, for the checks
 * below that open a named file. */
static int path_error(const char *opt, const char *path, int e, FILE *err)
{
    char tmp[128];
    buf_t b;
    fprintf(err, "pcsig-server: --%s %s: %s\n", opt, shown(&b, path, strlen(path)),
            log_strerror(e, tmp, sizeof tmp));
    buf_free(&b);
    return CONFIG_ERROR;
}

/*
 * The file named by --opt must open for reading and not be a directory:
 * else the one-line error "--opt FILE: reason". O_NONBLOCK so that a FIFO
 * does not hang start-up.
 */
static int check_readable(const char *opt, const char *path, FILE *err)
{
    if (!path)
        return CONFIG_OK;
    int e = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        e = errno;
    else if (fstat(fd, &st) < 0)
        e = errno;
    else if (S_ISDIR(st.st_mode))
        e = EISDIR;
    if (fd >= 0)
        close(fd);
    if (e == 0)
        return CONFIG_OK;
    return path_error(opt, path, e, err);
}

/* The directory named by --opt must open as a directory: else the one-line error. */
static int check_directory(const char *opt, const char *path, FILE *err)
{
    if (!path)
        return CONFIG_OK;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return CONFIG_OK;
    }
    int e = errno;
    return path_error(opt, path, e, err);
}

int config_preflight(const struct server_config *cfg, FILE *err)
{
    if (check_address("bind", cfg->bind, cfg->bind, err) < 0 ||
        check_metrics_address(cfg->metrics_bind, err) < 0 ||
        check_readable("tls-cert", cfg->tls_cert, err) < 0 ||
        check_readable("tls-key", cfg->tls_key, err) < 0 ||
        check_readable("tls-client-ca", cfg->tls_client_ca, err) < 0 ||
        check_readable("auth-token-file", cfg->auth_token_file, err) < 0 ||
        check_readable("cluster-password-file", cfg->cluster_password_file, err) < 0 ||
        check_directory("web-root", cfg->web_root, err) < 0)
        return CONFIG_ERROR;
    return CONFIG_OK;
}

void config_free(struct server_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].kind == OPT_STRING || opts[i].kind == OPT_LIST ||
            opts[i].kind == OPT_HOST_PORT)
            *(const char **)((char *)cfg + opts[i].off) = NULL;
    }
    while (cfg->owned) {
        struct config_str *next = cfg->owned->next;
        free(cfg->owned);
        cfg->owned = next;
    }
}
