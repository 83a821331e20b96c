/*
 * cli_opts: pcsig-client's command line: the options (each also in README
 * and the man page: tests/docs-test.sh checks --help against them), their
 * checks, and the auth token from a file or the environment.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_wire.h"
#include "log.h"
#include "proto.h"
#include "version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pcsig-client [options]\n"
            "A headless peerconnection signaling client (wire-compatible with WebRTC's\n"
            "peerconnection_client and server).\n\n"
            "  --server HOST    server to use (default $WEBRTC_SERVER or localhost)\n"
            "  --port N         server port, 1..65535 (default 8888)\n"
            "  --name NAME      name to sign in with (default $USERNAME@hostname);\n"
            "                   sent percent-encoded, so \"a b\" is listed as \"a%%20b\"\n"
            "  --autoconnect    connect at start (else type \"connect\")\n"
            "  --autocall       call the first peer (lowest id) once signed in\n"
            "  --keep-alive     reuse the hanging-GET connection (HTTP/1.1; pcsig servers)\n"
            "  --json           JSON lines: commands on stdin, events on stdout\n"
            "                   (connects at start)\n"
            "  --exec CMD       run CMD with /bin/sh for every message: the body on its\n"
            "                   stdin, the sender in $PCSIG_FROM, the type in\n"
            "                   $PCSIG_CONTENT_TYPE; one child at a time per peer, the\n"
            "                   other messages wait (at most 256, then dropped with a\n"
            "                   warning)\n"
            "  --exec-max N     at most N --exec children at once in all (default 4)\n"
            "  --auth-token TOKEN  sign in to a server run with --auth-token (sent as\n"
            "                   Authorization: Bearer on the sign-in only; never logged)\n"
            "  --auth-token-file FILE  the same, read from the first line of FILE\n"
            "                   (default: $PCSIG_AUTH_TOKEN when set)\n"
            "  --allow-insecure-token  send the token even over plain TCP to an address\n"
            "                   that is not loopback (else refused: use --tls)\n"
            "  --max-peers N    peers kept of the sign-in list (default 100000; the rest\n"
            "                   are skipped with a warning)\n"
            "  --tls            speak TLS; the server's certificate is verified (SNI and\n"
            "                   hostname/IP check) against --ca or the system's store\n"
            "  --ca FILE        trusted CA certificates (PEM) for --tls\n"
            "  --cert FILE      client certificate for mutual TLS (with --key)\n"
            "  --key FILE       private key of --cert\n"
            "  --insecure       with --tls: do NOT verify the server (testing only)\n"
            "  --log-level L    error, warn, info or debug on stderr (default warn)\n"
            "  --media M        real calls (GStreamer webrtcbin): none (data channel\n"
            "                   only), test (test pattern and tone, VP8/Opus) or devices\n"
            "                   (camera, microphone); without it, call sends a\n"
            "                   signaling-only offer\n"
            "  --no-auto-answer offer incoming calls (answer / reject) instead of\n"
            "                   answering at once\n"
            "  --ice-server URL stun:HOST:PORT or turn:USER:PASS@HOST:PORT (repeatable)\n"
            "  --show           show received video in a window\n"
            "  --stats-ms N     media_stats event every N ms in a call (0: none; 1000)\n"
            "  --version        print the version\n"
            "  --help           this text\n\n"
            "interactive commands: connect, peers, send PEER TEXT, call PEER, bye PEER,\n"
            "  quit (PEER: an id, or the name of one peer as peers lists it);\n"
            "  with --media also answer, reject, hangup, send dc TEXT\n"
            "--json commands, one object per line (\"to\": an id, or a name string):\n"
            "  {\"cmd\":\"send\",\"to\":2,\"data\":\"hi\",\"content_type\":\"text/plain\"}\n"
            "  (or \"data_b64\" for binary), {\"cmd\":\"peers\"}, {\"cmd\":\"call\",\"to\":2},\n"
            "  {\"cmd\":\"bye\",\"to\":2}, {\"cmd\":\"quit\"}; EOF also quits. With --media:\n"
            "  {\"cmd\":\"hangup\"}, {\"cmd\":\"answer\"}, {\"cmd\":\"reject\"},\n"
            "  {\"cmd\":\"send\",\"via\":\"dc\",\"data\":\"hi\"}. send, call, bye\n"
            "  and peers given before the sign-in wait for it; if the server is\n"
            "  unreachable when input ends, they are reported as errors (exit 1).\n");
}

enum { OPT_SERVER = 256, OPT_PORT, OPT_NAME, OPT_AUTOCONNECT, OPT_AUTOCALL, OPT_KEEPALIVE,
       OPT_JSON, OPT_EXEC, OPT_LOG_LEVEL, OPT_HELP, OPT_TLS, OPT_CA, OPT_CERT, OPT_KEY,
       OPT_INSECURE, OPT_VERSION, OPT_EXEC_MAX, OPT_AUTH_TOKEN, OPT_AUTH_TOKEN_FILE,
       OPT_ALLOW_INSECURE_TOKEN, OPT_MAX_PEERS, OPT_MEDIA, OPT_NO_AUTO_ANSWER,
       OPT_ICE_SERVER, OPT_SHOW, OPT_STATS_MS };

/*
 * The first line of path (without its line end) as the auth token (heap;
 * the caller wipes and frees it), or NULL after saying why on stderr.
 */
static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        char tmp[128];
        fprintf(stderr, "pcsig-client: cannot read --auth-token-file %s: %s\n", path,
                log_strerror(errno, tmp, sizeof tmp));
        return NULL;
    }
    char *t = calloc(1, CLI_TOKEN_FILE_MAX + 1);
    size_t n = t ? fread(t, 1, CLI_TOKEN_FILE_MAX, f) : 0;
    fclose(f);
    if (!t) {
        fprintf(stderr, "pcsig-client: out of memory\n");
        return NULL;
    }
    size_t line = 0;
    while (line < n && t[line] != '\r' && t[line] != '\n')
        line++;
    /* Only the token stays: the file's other lines are wiped at once, and
     * the callers wipe strlen(token) bytes, which a NUL would cut short. */
    explicit_bzero(t + line, CLI_TOKEN_FILE_MAX + 1 - line);
    const char *why = line == 0 ? "no token on its first line"
                      : memchr(t, '\0', line) ? "a NUL byte in the token"
                                              : NULL;
    if (why) {
        fprintf(stderr, "pcsig-client: --auth-token-file %s: %s\n", path, why);
        explicit_bzero(t, line);
        free(t);
        return NULL;
    }
    return t;
}

int cli_parse_options(int argc, char **argv, struct cli *cli, struct pcsig_client_options *o,
                      struct cli_start *st)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"port", required_argument, NULL, OPT_PORT},
        {"name", required_argument, NULL, OPT_NAME},
        {"autoconnect", no_argument, NULL, OPT_AUTOCONNECT},
        {"autocall", no_argument, NULL, OPT_AUTOCALL},
        {"keep-alive", no_argument, NULL, OPT_KEEPALIVE},
        {"json", no_argument, NULL, OPT_JSON},
        {"exec", required_argument, NULL, OPT_EXEC},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {"tls", no_argument, NULL, OPT_TLS},
        {"ca", required_argument, NULL, OPT_CA},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"exec-max", required_argument, NULL, OPT_EXEC_MAX},
        {"auth-token", required_argument, NULL, OPT_AUTH_TOKEN},
        {"auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE},
        {"allow-insecure-token", no_argument, NULL, OPT_ALLOW_INSECURE_TOKEN},
        {"max-peers", required_argument, NULL, OPT_MAX_PEERS},
        {"media", required_argument, NULL, OPT_MEDIA},
        {"no-auto-answer", no_argument, NULL, OPT_NO_AUTO_ANSWER},
        {"ice-server", required_argument, NULL, OPT_ICE_SERVER},
        {"show", no_argument, NULL, OPT_SHOW},
        {"stats-ms", required_argument, NULL, OPT_STATS_MS},
        {NULL, 0, NULL, 0},
    };
    cli->mcfg.stats_ms = 1000;
    const char *env_server = getenv("WEBRTC_SERVER");
    o->server = env_server && *env_server ? env_server : "localhost";
    o->port = 8888;
    enum log_level level = LOG_WARN;
    const char *token_file = NULL;
    cli->exec_max = CLI_EXEC_DEFAULT_MAX;
    uint64_t max_peers = 100000;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER: o->server = optarg; break;
        case OPT_PORT: {
            uint64_t v;
            if (proto_parse_u64(optarg, strlen(optarg), &v) < 0 || v < 1 || v > 65535) {
                fprintf(stderr, "Error: %s is not a valid port.\n", optarg);
                return CLI_EXIT_USAGE;
            }
            o->port = (uint16_t)v;
            break;
        }
        case OPT_NAME: o->name = optarg; break;
        case OPT_AUTOCONNECT: st->autoconnect = true; break;
        case OPT_AUTOCALL: cli->autocall = true; break;
        case OPT_KEEPALIVE: o->keep_alive = true; break;
        case OPT_JSON: cli->json = true; break;
        case OPT_EXEC: cli->exec_cmd = optarg; break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg, &level) < 0) {
                fprintf(stderr, "pcsig-client: bad value '%s' for --log-level (see --help)\n", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case OPT_HELP: usage(stdout); return 0;
        case OPT_VERSION:
            printf("pcsig-client %s\n%s\n", PCSIG_VERSION, cli_media_version());
            return 0;
        case OPT_MEDIA: cli->mcfg.media = optarg; break;
        case OPT_NO_AUTO_ANSWER: cli->mcfg.no_auto_answer = true; break;
        case OPT_SHOW: cli->mcfg.show = true; break;
        case OPT_ICE_SERVER: {
            const char *why = cli_media_check_ice(optarg);
            if (why || cli->mcfg.nice == CLI_MEDIA_MAX_ICE) {
                fprintf(stderr, "pcsig-client: bad --ice-server '%s': %s\n", optarg,
                        why ? why : "too many");
                return CLI_EXIT_USAGE;
            }
            cli->mcfg.ice[cli->mcfg.nice++] = optarg;
            break;
        }
        case OPT_STATS_MS: {
            uint64_t v;
            if (proto_parse_u64(optarg, strlen(optarg), &v) < 0 || v > 3600000) {
                fprintf(stderr, "pcsig-client: bad value '%s' for --stats-ms\n", optarg);
                return CLI_EXIT_USAGE;
            }
            cli->mcfg.stats_ms = (int)v;
            break;
        }
        case OPT_TLS: o->tls = true; break;
        case OPT_CA: o->ca_file = optarg; break;
        case OPT_CERT: o->cert_file = optarg; break;
        case OPT_KEY: o->key_file = optarg; break;
        case OPT_INSECURE: o->insecure = true; break;
        case OPT_AUTH_TOKEN: o->auth_token = optarg; break;
        case OPT_AUTH_TOKEN_FILE: token_file = optarg; break;
        case OPT_ALLOW_INSECURE_TOKEN: o->allow_insecure_token = true; break;
        case OPT_EXEC_MAX:
        case OPT_MAX_PEERS: {
            uint64_t v;
            uint64_t hi = c == OPT_EXEC_MAX ? 1024 : 100000000;
            if (proto_parse_u64(optarg, strlen(optarg), &v) < 0 || v < 1 || v > hi) {
                fprintf(stderr, "pcsig-client: bad value '%s' for --%s (1..%llu)\n", optarg,
                        c == OPT_EXEC_MAX ? "exec-max" : "max-peers", (unsigned long long)hi);
                return CLI_EXIT_USAGE;
            }
            if (c == OPT_EXEC_MAX)
                cli->exec_max = (unsigned)v;
            else
                max_peers = v;
            break;
        }
        default:
            if (optopt)
                fprintf(stderr, "pcsig-client: option %s needs a value (see --help)\n",
                        argv[optind - 1]);
            else
                fprintf(stderr, "pcsig-client: unknown option %s (see --help)\n",
                        argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pcsig-client: unexpected argument '%s' (see --help)\n", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (!o->tls && (o->ca_file || o->cert_file || o->key_file || o->insecure)) {
        fprintf(stderr, "pcsig-client: --ca, --cert, --key and --insecure need --tls\n");
        return CLI_EXIT_USAGE;
    }
    if ((o->cert_file == NULL) != (o->key_file == NULL)) {
        fprintf(stderr, "pcsig-client: --cert and --key go together\n");
        return CLI_EXIT_USAGE;
    }
    if (o->auth_token && token_file) {
        fprintf(stderr, "pcsig-client: --auth-token and --auth-token-file: give one\n");
        return CLI_EXIT_USAGE;
    }
    /* The token from a file or the environment keeps it out of ps. */
    char *file_token = NULL;
    if (token_file && !(o->auth_token = file_token = read_token_file(token_file)))
        return CLI_EXIT_USAGE;
    st->file_token = file_token;
    const char *env_token = getenv("PCSIG_AUTH_TOKEN");
    if (!o->auth_token && env_token && *env_token)
        o->auth_token = env_token;
    if (o->auth_token && !cwire_token_ok(o->auth_token)) {
        /* Not echoed: it may be a real token with a stray byte. */
        fprintf(stderr, "pcsig-client: the auth token must be 1 to %d bytes of visible ASCII "
                        "(no spaces or control characters)\n", CWIRE_MAX_TOKEN);
        if (file_token) {
            explicit_bzero(file_token, strlen(file_token));
            free(file_token);
            st->file_token = NULL;
        }
        return CLI_EXIT_USAGE;
    }
    o->max_peers = (size_t)max_peers;
    cli->peers.max = (size_t)max_peers;
    if (cli->exec_cmd && !(cli->children = calloc(cli->exec_max, sizeof *cli->children))) {
        fprintf(stderr, "pcsig-client: out of memory\n");
        return CLI_EXIT_FATAL;
    }
    /* The library logs the warning itself at warn level; say it here only
     * when --log-level error would hide that record. */
    if (o->insecure && level < LOG_WARN)
        fprintf(stderr, "pcsig-client: WARNING: --insecure: the server's certificate is NOT "
                        "verified; anyone on the path can read and change this session\n");
    log_set_level(level);
    return -1;
}
