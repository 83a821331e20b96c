/*
 * pcsig-bench: a load generator for pcsig-server (or any peerconnection
 * signaling server).
 *
 * It signs in N peers that each keep a hanging /wait, drains the join
 * notifications (N joins cost N(N-1)/2 deliveries, one per /wait) and
 * times that, then relays M messages through the server from S sender
 * threads to random peers and checks on the receiving side that each
 * arrived exactly once, intact and in order per sender -> receiver, timing
 * POST start -> delivery. One summary line goes to stdout:
 *
 *   peers=N msgs=M delivered=D lost=L dup=X reordered=R join_s=J rate=R/s
 *   p50=.. p99=.. p999=.. ms [server_rss_mb=.. server_cpu_s=.. server_threads=..]
 *
 * delivered counts distinct intact messages; lost = accepted (200) minus
 * delivered after the drain; join_s runs from the first sign-in until every
 * peer is signed in and all N(N-1)/2 join notifications have arrived; rate
 * is delivered / (first POST start .. last delivery); the percentiles are
 * POST start -> delivery. A line of details (errors, retries, idle /wait
 * answers, the bench's own CPU; with --tls the handshakes, full, resumed
 * and failed; with --batch the batch answers and records per batch) comes
 * first.
 *
 * --batch asks for batched /wait answers (X-Pcsig-Batch: 1, an opt-in
 * extension of pcsig-server): each record is checked as a single answer
 * would be, and any flaw in the framing fails the run as unexpected.
 *
 * --stepwise-join C joins one peer at a time (each sign-in waits until every
 * earlier peer has seen the last join and sent its next /wait) and opens at
 * most C new /wait connections at a time per loop while joining: a server
 * with a 5-deep listen backlog (the original) is not flooded by every
 * member re-polling at once, and no member goes long without a parked
 * /wait (the original times out a member after 30 s without one). The
 * relay is measured exactly as without it.
 *
 * --churn R signs transient members in and out (R cycles a second) while
 * the messages are relayed (bench_churn.c); every steady peer must see each
 * of them join and leave exactly once, or the run fails.
 *
 * --tls runs all of it over TLS (a tls_client_t per thread: reconnects
 * resume). --handshakes N measures handshakes instead (bench_hs.c): N
 * connections with a fresh client each (full), then N sharing one
 * (resumed), and prints
 *
 *   handshakes full=N rate=R/s; resumed=N rate=R/s (reused=K)
 *   [server_cpu_s full=.. resumed=..]
 *
 * Exit status: 0 all good; 1 a check failed (loss, duplicate, reorder,
 * corrupt body, refused message, failed sign-in, unexpected answer, a churn
 * cycle failed or its notifications lost or duplicated);
 * 2 bad usage; 3 timeout or a fatal error (server died, out of memory).
 *
 * Threads: main (phases, watchdog, report), --loops receiver loops
 * (bench_peers.c), --senders sender threads (bench_send.c), with --churn
 * one churn thread (bench_churn.c); with
 * --handshakes only --hs-parallel connecting threads (bench_hs.c).
 */
#include "bench.h"
#include "strlit.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"

#define EXIT_CHECK 1
#define EXIT_USAGE 2
#define EXIT_FATAL 3
#define SPAWN_WAIT_MS 10000
#define POLL_MS 2
#define PROGRESS_EVERY_NS 5000000000ull
#define SIGNOUT_WAIT_S 10.0
#define DEFAULT_CA "certs/ca.pem"
#define DEFAULT_TLS_CERT "certs/server.pem"
#define DEFAULT_TLS_KEY "certs/server.key"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: pcsig-bench [options] [-- server options]\n"
        "Load generator for pcsig-server: N peers with hanging /waits, joins drained,\n"
        "M messages relayed and checked (exactly once, intact, in order), latency.\n"
        "\n"
        "  --server HOST          server to load (default 127.0.0.1)\n"
        "  --port P               its port (default 8888)\n"
        "  --spawn-server PATH    start PATH --port 0 --bind 127.0.0.1 [server options]\n"
        "                         and report its peak RSS, CPU time and threads\n"
        "  --peers N              peers signed in, each with a hanging /wait (default 100)\n"
        "  --messages M           messages relayed in total (default 10000)\n"
        "  --senders S            sender threads (default 2)\n"
        "  --inflight K           outstanding messages per sender (default 1; with\n"
        "                         --rate: the cap, default 256); at most peers - 1\n"
        "  --rate R               offered load in messages/s in total (default: closed loop)\n"
        "  --size BYTES           message body size, >= %d (default 64)\n"
        "  --keepalive            HTTP/1.1, one persistent connection per peer and per\n"
        "                         sender (pipelined); default: stock client style, a new\n"
        "                         HTTP/1.0 connection per request\n"
        "  --batch                every /wait asks for batched answers (X-Pcsig-Batch: 1);\n"
        "                         their records are checked like single answers, any\n"
        "                         flaw in the framing counts as unexpected; the details\n"
        "                         line counts batch answers and records per batch\n"
        "  --loops L              receiver event-loop threads (default 2)\n"
        "  --src-addrs K          spread connections over 127.0.0.1..127.0.0.K (default 8;\n"
        "                         0: let the kernel choose; only for a loopback server)\n"
        "  --signin-concurrency C sign-ins in flight per loop (default 64)\n"
        "  --timeout S            overall limit in seconds, then fail (default 120)\n"
        "  --drain S              wait this long for deliveries after the last send\n"
        "                         (default 10)\n"
        "  --sign-out/--no-sign-out  sign the peers out at the end (default: only when\n"
        "                         the server was not spawned)\n"
        "  --churn R              while relaying, sign transient members (churn<k>) in\n"
        "                         and out, R cycles a second; every peer must see each\n"
        "                         join and leave once (the details line counts them)\n"
        "  --join-interval MS     peer i signs in MS x i after the first (default 0: as\n"
        "                         fast as --signin-concurrency allows); join_s is then\n"
        "                         the time until every join was seen (quiet)\n"
        "  --stepwise-join C      one join at a time, for servers with a short listen\n"
        "                         backlog (the original's is 5): peer i signs in once\n"
        "                         every earlier peer has seen peer i-1 join and sent its\n"
        "                         next /wait; while joining, each loop opens at most C\n"
        "                         new /wait connections at a time (the rest queue in\n"
        "                         the bench), then an OPTIONS request whose answer\n"
        "                         shows the server accepted them; the relay that\n"
        "                         follows is unchanged\n"
        "  --server-pid PID       an external server's pid: its CPU time while the\n"
        "                         messages are relayed is reported per message\n"
        "                         (relay_cpu_us_per_msg; spawned servers always)\n"
        "  --seed N               random seed (default 1)\n"
        "  --quiet                no progress lines on stderr\n"
        "  --tls                  every connection speaks TLS (a client context per thread:\n"
        "                         reconnects resume from its ticket pool); the details line\n"
        "                         counts full, resumed and failed handshakes\n"
        "  --ca FILE              CA to verify the server with (default %s)\n"
        "  --tls-name NAME        name (or address) to verify and send as SNI\n"
        "                         (default: the --server host)\n"
        "  --tls-cert FILE        with --spawn-server: the server's certificate and key,\n"
        "  --tls-key FILE         passed as its --tls-cert/--tls-key (default %s,\n"
        "                         %s) unless the server options after -- name them\n"
        "  --handshakes N         TLS handshake mode (implies --tls): N connections, each\n"
        "                         a handshake + GET /sign_in?h + GET /sign_out on it, first\n"
        "                         with a fresh client context each (full handshakes), then\n"
        "                         sharing one (resumed); rates and the server's CPU per phase\n"
        "  --hs-parallel P        connections at a time in that mode (default 1)\n"
        "  --help                 this text\n"
        "\n"
        "Exit status: 0 every message delivered once, intact and in order; 1 a check\n"
        "failed; 2 bad usage; 3 timeout or fatal error.\n",
        BENCH_BODY_HDR, DEFAULT_CA, DEFAULT_TLS_CERT, DEFAULT_TLS_KEY);
}

/* ---- option values ------------------------------------------------------ */

static int opt_u64(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (proto_parse_u64(s, strlen(s), &v) < 0 || v < min || v > max) {
        fprintf(stderr, "pcsig-bench: %s wants a whole number in %" PRIu64 "..%" PRIu64
                        ", not '%s'\n", name, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int opt_double(const char *name, const char *s, double min, double max, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "pcsig-bench: %s wants a number in %g..%g, not '%s'\n", name, min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    OPT_SERVER = 256, OPT_PORT, OPT_SPAWN, OPT_PEERS, OPT_MESSAGES, OPT_SENDERS, OPT_INFLIGHT,
    OPT_RATE, OPT_SIZE, OPT_KEEPALIVE, OPT_LOOPS, OPT_SRC, OPT_SIGNIN_CONC, OPT_TIMEOUT,
    OPT_DRAIN, OPT_SIGN_OUT, OPT_NO_SIGN_OUT, OPT_SEED, OPT_QUIET, OPT_HELP, OPT_CHURN,
    OPT_JOIN_INTERVAL, OPT_SERVER_PID, OPT_STEPWISE,
    OPT_TLS, OPT_CA, OPT_TLS_NAME, OPT_TLS_CERT, OPT_TLS_KEY, OPT_HANDSHAKES, OPT_HS_PARALLEL,
    OPT_BATCH,
};

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    static const struct option longs[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"port", required_argument, NULL, OPT_PORT},
        {"spawn-server", required_argument, NULL, OPT_SPAWN},
        {"peers", required_argument, NULL, OPT_PEERS},
        {"messages", required_argument, NULL, OPT_MESSAGES},
        {"senders", required_argument, NULL, OPT_SENDERS},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"rate", required_argument, NULL, OPT_RATE},
        {"size", required_argument, NULL, OPT_SIZE},
        {"keepalive", no_argument, NULL, OPT_KEEPALIVE},
        {"batch", no_argument, NULL, OPT_BATCH},
        {"loops", required_argument, NULL, OPT_LOOPS},
        {"src-addrs", required_argument, NULL, OPT_SRC},
        {"signin-concurrency", required_argument, NULL, OPT_SIGNIN_CONC},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"drain", required_argument, NULL, OPT_DRAIN},
        {"sign-out", no_argument, NULL, OPT_SIGN_OUT},
        {"no-sign-out", no_argument, NULL, OPT_NO_SIGN_OUT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"churn", required_argument, NULL, OPT_CHURN},
        {"join-interval", required_argument, NULL, OPT_JOIN_INTERVAL},
        {"stepwise-join", required_argument, NULL, OPT_STEPWISE},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"tls", no_argument, NULL, OPT_TLS},
        {"ca", required_argument, NULL, OPT_CA},
        {"tls-name", required_argument, NULL, OPT_TLS_NAME},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"handshakes", required_argument, NULL, OPT_HANDSHAKES},
        {"hs-parallel", required_argument, NULL, OPT_HS_PARALLEL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    bool inflight_set = false;
    uint64_t v;
    int c, rc = 0;

    *o = (struct bench_opts){
        .host = "127.0.0.1", .port = 8888, .peers = 100, .messages = 10000, .senders = 2,
        .inflight = 1, .size = 64, .loops = 2, .src_addrs = 8, .timeout_s = 120,
        .drain_s = 10, .signin_conc = 64, .sign_out = -1, .seed = 1,
        .ca_file = DEFAULT_CA, .tls_cert = DEFAULT_TLS_CERT, .tls_key = DEFAULT_TLS_KEY,
        .hs_parallel = 1,
    };
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            if (strlen(optarg) == 0 || strlen(optarg) > 100) {
                fprintf(stderr, "pcsig-bench: --server wants a host of 1..100 bytes\n");
                rc = -1;
            }
            o->host = optarg;
            break;
        case OPT_PORT:
            if ((rc = opt_u64("--port", optarg, 1, 65535, &v)) == 0)
                o->port = (uint16_t)v;
            break;
        case OPT_SPAWN: o->spawn = optarg; break;
        case OPT_PEERS:
            if ((rc = opt_u64("--peers", optarg, 2, BENCH_MAX_PEERS, &v)) == 0)
                o->peers = (unsigned)v;
            break;
        case OPT_MESSAGES:
            rc = opt_u64("--messages", optarg, 0, (uint64_t)BENCH_MAX_SENDERS << 32, &o->messages);
            break;
        case OPT_SENDERS:
            if ((rc = opt_u64("--senders", optarg, 1, BENCH_MAX_SENDERS, &v)) == 0)
                o->senders = (unsigned)v;
            break;
        case OPT_INFLIGHT:
            if ((rc = opt_u64("--inflight", optarg, 1, 65536, &v)) == 0)
                o->inflight = (unsigned)v;
            inflight_set = true;
            break;
        case OPT_RATE: rc = opt_double("--rate", optarg, 0.001, 1e9, &o->rate); break;
        case OPT_SIZE:
            if ((rc = opt_u64("--size", optarg, BENCH_BODY_HDR, BENCH_MAX_SIZE, &v)) == 0)
                o->size = (size_t)v;
            break;
        case OPT_KEEPALIVE: o->keepalive = true; break;
        case OPT_BATCH: o->batch = true; break;
        case OPT_LOOPS:
            if ((rc = opt_u64("--loops", optarg, 1, BENCH_MAX_LOOPS, &v)) == 0)
                o->loops = (unsigned)v;
            break;
        case OPT_SRC:
            if ((rc = opt_u64("--src-addrs", optarg, 0, BENCH_MAX_SRC, &v)) == 0)
                o->src_addrs = (unsigned)v;
            break;
        case OPT_SIGNIN_CONC:
            if ((rc = opt_u64("--signin-concurrency", optarg, 1, 100000, &v)) == 0)
                o->signin_conc = (unsigned)v;
            break;
        case OPT_TIMEOUT: rc = opt_double("--timeout", optarg, 0.1, 86400, &o->timeout_s); break;
        case OPT_DRAIN: rc = opt_double("--drain", optarg, 0, 3600, &o->drain_s); break;
        case OPT_SIGN_OUT: o->sign_out = 1; break;
        case OPT_NO_SIGN_OUT: o->sign_out = 0; break;
        case OPT_SEED: rc = opt_u64("--seed", optarg, 0, UINT64_MAX, &o->seed); break;
        case OPT_QUIET: o->quiet = true; break;
        case OPT_TLS: o->tls = true; break;
        case OPT_CA: o->ca_file = optarg; break;
        case OPT_TLS_NAME:
            if (strlen(optarg) == 0 || strlen(optarg) > 253) {
                fprintf(stderr, "pcsig-bench: --tls-name wants a name of 1..253 bytes\n");
                rc = -1;
            }
            o->tls_name = optarg;
            break;
        case OPT_TLS_CERT: o->tls_cert = optarg; break;
        case OPT_TLS_KEY: o->tls_key = optarg; break;
        case OPT_HANDSHAKES:
            rc = opt_u64("--handshakes", optarg, 1, 100000000, &o->handshakes);
            o->tls = true;
            break;
        case OPT_HS_PARALLEL:
            if ((rc = opt_u64("--hs-parallel", optarg, 1, 256, &v)) == 0)
                o->hs_parallel = (unsigned)v;
            break;
        case OPT_CHURN:
            rc = opt_double("--churn", optarg, 0.001, 100000, &o->churn_rate);
            break;
        case OPT_JOIN_INTERVAL:
            rc = opt_double("--join-interval", optarg, 0, 60000, &o->join_interval_ms);
            break;
        case OPT_STEPWISE:
            if ((rc = opt_u64("--stepwise-join", optarg, 1, 100000, &v)) == 0)
                o->stepwise = (unsigned)v;
            break;
        case OPT_SERVER_PID:
            if ((rc = opt_u64("--server-pid", optarg, 1, INT32_MAX, &v)) == 0)
                o->server_pid = (int)v;
            break;
        case OPT_HELP: usage(stdout); exit(0);
        default:
            fprintf(stderr, "pcsig-bench: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            rc = -1;
            break;
        }
    }
    if (rc != 0)
        return -1;
    if (optind < argc && !o->spawn) {
        fprintf(stderr, "pcsig-bench: arguments after the options are server options and "
                        "need --spawn-server\n");
        return -1;
    }
    if (o->churn_rate > 0 && (o->messages == 0 || o->handshakes)) {
        fprintf(stderr, "pcsig-bench: --churn runs while messages are relayed: it needs "
                        "--messages > 0 and no --handshakes\n");
        return -1;
    }
    if (o->stepwise && o->join_interval_ms > 0) {
        fprintf(stderr, "pcsig-bench: --stepwise-join paces the sign-ins itself: "
                        "not with --join-interval\n");
        return -1;
    }
    o->server_args = argv + optind;
    o->nserver_args = argc - optind;
    if (o->rate > 0 && !inflight_set)
        o->inflight = 256;
    /* Distinct receivers per sender keep the order check exact. */
    if (o->inflight > o->peers - 1)
        o->inflight = o->peers - 1;
    if (o->sign_out < 0)
        o->sign_out = o->spawn ? 0 : 1;
    return 0;
}

/* ---- the spawned server ------------------------------------------------- */

struct server_proc {
    pid_t pid;     /* 0: none */
    int out_fd;    /* its stdout, kept open so it never sees EPIPE */
    bool exited;
    int status;
};

/* Does a server option after -- start with name ("--x" or "--x=...")? */
static bool server_arg_given(const struct bench_opts *o, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < o->nserver_args; i++) {
        const char *a = o->server_args[i];
        if (strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '='))
            return true;
    }
    return false;
}

static int spawn_server(const struct bench_opts *o, struct server_proc *sp, uint16_t *port)
{
    static const char *const fixed[] = {"--port", "0", "--bind", "127.0.0.1",
                                        "--log-level", "warn"};
    size_t nfixed = sizeof fixed / sizeof fixed[0];
    /* --tls: the server speaks TLS on its main port, unless the options after
     * -- say otherwise (with --tls-port we load that TLS port instead). */
    bool add_tls = o->tls && !server_arg_given(o, "--tls-cert");
    size_t argc = 1 + nfixed + (add_tls ? 4u : 0u) + (size_t)o->nserver_args;
    char **argv = calloc(argc + 1, sizeof *argv);
    int pfd[2];
    if (!argv)
        return -ENOMEM;
    size_t at = 0;
    argv[at++] = (char *)o->spawn;
    for (size_t i = 0; i < nfixed; i++)
        argv[at++] = (char *)fixed[i];
    if (add_tls) {
        argv[at++] = (char *)"--tls-cert";
        argv[at++] = (char *)o->tls_cert;
        argv[at++] = (char *)"--tls-key";
        argv[at++] = (char *)o->tls_key;
    }
    for (int i = 0; i < o->nserver_args; i++)
        argv[at++] = o->server_args[i];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        free(argv);
        return -errno;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(pfd[0]);
        close(pfd[1]);
        free(argv);
        return err;
    }
    if (pid == 0) {
        if (dup2(pfd[1], STDOUT_FILENO) < 0)
            _exit(127);
        execv(o->spawn, argv);
        _exit(127);
    }
    free(argv);
    close(pfd[1]);
    sp->pid = pid;
    sp->out_fd = pfd[0];

    /* Wait for "pcsig-server listening on port N", or with --tls for "TLS
     * port N" (the main port's line when it speaks TLS, else --tls-port's). */
    const char *banner = o->tls ? "pcsig-server listening on TLS port "
                                  : "pcsig-server listening on port ";
    size_t blen = strlen(banner);
    char line[512];
    size_t len = 0;
    uint64_t deadline = bench_now_ns() + (uint64_t)SPAWN_WAIT_MS * 1000000u;
    for (;;) {
        char *nl = memchr(line, '\n', len);
        if (nl) {
            char *hit = memmem(line, (size_t)(nl - line), banner, blen);
            if (hit) {
                const char *digits = hit + blen;
                uint64_t v;
                if (proto_parse_u64(digits, (size_t)(nl - digits), &v) == 0 && v > 0 &&
                    v <= 65535) {
                    *port = (uint16_t)v;
                    return 0;
                }
            }
            size_t rest = len - (size_t)(nl + 1 - line);
            memmove(line, nl + 1, rest);
            len = rest;
            continue;
        }
        uint64_t now = bench_now_ns();
        if (now >= deadline || len == sizeof line)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = sp->out_fd, .events = POLLIN};
        int n = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n <= 0)
            continue;
        ssize_t r = read(sp->out_fd, line + len, sizeof line - len);
        if (r == 0)
            return -ECHILD; /* it exited (or closed stdout) before listening */
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (r > 0)
            len += (size_t)r;
    }
}

static bool server_alive(struct server_proc *sp)
{
    if (sp->pid <= 0 || sp->exited)
        return sp->pid > 0 ? false : true;
    int st;
    pid_t r = waitpid(sp->pid, &st, WNOHANG);
    if (r == sp->pid) {
        sp->exited = true;
        sp->status = st;
        return false;
    }
    return true;
}

static void describe_exit(int st, char *out, size_t n)
{
    if (WIFEXITED(st))
        snprintf(out, n, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, n, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(out, n, "status 0x%x", (unsigned)st);
}

/* SIGTERM, then SIGKILL if it does not stop in time. */
static void stop_server(struct server_proc *sp)
{
    if (sp->pid <= 0)
        return;
    if (!sp->exited) {
        kill(sp->pid, SIGTERM);
        uint64_t deadline = bench_now_ns() + 15000000000ull;
        while (!sp->exited && bench_now_ns() < deadline) {
            if (!server_alive(sp))
                break;
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        if (!sp->exited) {
            fprintf(stderr,
                    "pcsig-bench: server did not stop within 15 s of SIGTERM; killing it\n");
            kill(sp->pid, SIGKILL);
            int st;
            if (waitpid(sp->pid, &st, 0) == sp->pid) {
                sp->exited = true;
                sp->status = st;
            }
        }
    }
    if (sp->out_fd >= 0)
        close(sp->out_fd);
    sp->out_fd = -1;
}

struct proc_stats {
    bool ok;
    double rss_mb;
    double cpu_s;
    long threads;
};

/* VmHWM and Threads from /proc/PID/status, utime+stime from /proc/PID/stat. */
static struct proc_stats read_proc_stats(pid_t pid)
{
    struct proc_stats ps = {0};
    char path[64], line[512];
    uint64_t v;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return ps;
    while (fgets(line, sizeof line, f)) {
        const char *key = NULL;
        if (strncmp(line, STRLIT("VmHWM:")) == 0)
            key = "VmHWM:";
        else if (strncmp(line, STRLIT("Threads:")) == 0)
            key = "Threads:";
        if (!key)
            continue;
        const char *p = line + strlen(key);
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strspn(p, "0123456789");
        if (proto_parse_u64(p, n, &v) < 0)
            continue;
        if (key[0] == 'V')
            ps.rss_mb = (double)v / 1024.0;
        else
            ps.threads = (long)v;
    }
    fclose(f);

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return ps;
    char stat[1024];
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
    if (!p)
        return ps;
    p++;
    /* After ')': field 3 (state) is token 0; utime (14) token 11, stime (15) token 12. */
    uint64_t ticks = 0;
    for (int tok = 0; tok <= 12; tok++) {
        while (*p == ' ')
            p++;
        size_t tl = strcspn(p, " ");
        if (tl == 0)
            return ps;
        if (tok >= 11) {
            if (proto_parse_u64(p, tl, &v) < 0)
                return ps;
            ticks += v;
        }
        p += tl;
    }
    long hz = sysconf(_SC_CLK_TCK);
    ps.cpu_s = (double)ticks / (double)(hz > 0 ? hz : 100);
    ps.ok = true;
    return ps;
}

/* ---- set-up ------------------------------------------------------------- */

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_errno(LOG_WARN, errno, "setrlimit(RLIMIT_NOFILE)");
    }
}

static int resolve_server(struct bench *b, const char *host, uint16_t port)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[8];
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "pcsig-bench: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&b->srv, res->ai_addr, res->ai_addrlen);
    b->srv_len = res->ai_addrlen;
    freeaddrinfo(res);
    b->spread_src = false;
    if (b->srv.ss_family == AF_INET && b->o.src_addrs > 0) {
        uint32_t a = ntohl(((struct sockaddr_in *)&b->srv)->sin_addr.s_addr);
        b->spread_src = (a >> 24) == 127; /* loopback servers only */
    }
    bool v6 = strchr(host, ':') != NULL;
    snprintf(b->host_hdr, sizeof b->host_hdr, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             (unsigned)port);
    return 0;
}

static int alloc_state(struct bench *b)
{
    const struct bench_opts *o = &b->o;
    b->peers = calloc(o->peers, sizeof *b->peers);
    b->last_seq = calloc((size_t)o->peers * o->senders, sizeof *b->last_seq);
    if (!b->peers || !b->last_seq)
        return -ENOMEM;
    for (unsigned i = 0; i < o->peers; i++)
        b->peers[i].index = i;
    for (unsigned s = 0; s < o->senders; s++) {
        b->msgs_for[s] = o->messages / o->senders + (s < o->messages % o->senders ? 1 : 0);
        size_t words = (size_t)(b->msgs_for[s] / 64 + 1);
        b->seen[s] = calloc(words, sizeof *b->seen[s]);
        if (!b->seen[s])
            return -ENOMEM;
    }
    b->join_target = (uint64_t)o->peers * (o->peers - 1) / 2;
    atomic_init(&b->phase, PH_JOIN);
    atomic_init(&b->stop, false);
    return 0;
}

/* After every thread is joined. */
static void free_state(struct bench *b)
{
    for (unsigned s = 0; s < b->o.senders; s++)
        free(b->seen[s]);
    free(b->peers);
    free(b->last_seq);
    free(b->loops);
    free(b->senders);
}

/* ---- phases ------------------------------------------------------------- */

struct run {
    struct bench *b;
    struct server_proc *sp;
    uint64_t deadline_ns;
    uint64_t next_progress_ns;
    bool timed_out;
    bool fatal;
    const char *phase_name;
    uint64_t accepted; /* messages the server accepted: what the drain waits for */
};

static void progress(struct run *r, uint64_t now)
{
    struct bench *b = r->b;
    if (b->o.quiet || now < r->next_progress_ns)
        return;
    r->next_progress_ns = now + PROGRESS_EVERY_NS;
    fprintf(stderr,
            "pcsig-bench: [%.1f s] %s: signed in %" PRIuFAST64 "/%u, joins %" PRIuFAST64 "/%" PRIu64
            ", settled %" PRIu64 "/%" PRIu64 ", delivered %" PRIuFAST64 "\n",
            (double)(now - b->t0_ns) / 1e9, r->phase_name, atomic_load(&b->signed_in),
            b->o.peers, atomic_load(&b->joins), b->join_target, bench_senders_settled(b),
            b->o.messages, atomic_load(&b->delivered));
}

/* Wait until done(r) or until the run must end; false when it must. */
static bool wait_for(struct run *r, bool (*done)(struct run *), uint64_t until_ns)
{
    for (;;) {
        if (done(r))
            return true;
        uint64_t now = bench_now_ns();
        progress(r, now);
        if (atomic_load(&r->b->stop)) {
            r->fatal = true;
            return false;
        }
        if (!server_alive(r->sp)) {
            char how[64];
            describe_exit(r->sp->status, how, sizeof how);
            fprintf(stderr, "pcsig-bench: the server died during %s (%s)\n", r->phase_name, how);
            r->fatal = true;
            return false;
        }
        if (now >= r->deadline_ns) {
            fprintf(stderr, "pcsig-bench: timeout (--timeout %.3g s) during %s\n",
                    r->b->o.timeout_s, r->phase_name);
            r->timed_out = true;
            return false;
        }
        if (now >= until_ns)
            return false;
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static bool joined(struct run *r)
{
    struct bench *b = r->b;
    uint64_t in = atomic_load(&b->signed_in), failed = atomic_load(&b->signin_failed);
    if (failed)
        return true; /* nothing more to wait for */
    return in == b->o.peers && atomic_load(&b->joins) >= b->join_target &&
           (!b->o.stepwise || atomic_load(&b->waits_unsent) == 0);
}

static bool all_settled(struct run *r)
{
    return bench_senders_settled(r->b) >= r->b->o.messages;
}

/* Notifications about churn members each peer must have had by the end. */
static uint64_t churn_expected(const struct bench *b, uint64_t cycles)
{
    return cycles * b->o.peers;
}

static bool drained(struct run *r)
{
    struct bench *b = r->b;
    return atomic_load(&b->delivered) >= r->accepted &&
           atomic_load(&b->churn_joins) >= churn_expected(b, atomic_load(&b->churn_signins)) &&
           atomic_load(&b->churn_leaves) >= churn_expected(b, atomic_load(&b->churn_signouts));
}

static bool signed_out(struct run *r)
{
    return bench_loops_signout_done(r->b) == r->b->o.loops;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* --handshakes: the two phases, then their report. The exit status. */
static int run_handshakes(struct bench *b, struct server_proc *sp)
{
    static const char *const names[2] = {"full", "resumed"};
    struct bench_hs_phase *ph = calloc(2, sizeof *ph);
    double srv_cpu[2] = {-1, -1}, own_cpu[2] = {0, 0};
    bool fatal = false;
    if (!ph)
        return EXIT_FATAL;
    for (int k = 0; k < 2 && !fatal; k++) {
        struct proc_stats before = {0}, after = {0};
        if (sp->pid > 0 && server_alive(sp))
            before = read_proc_stats(sp->pid);
        double self0 = self_cpu_s();
        int rc = bench_hs_phase(b, k == 1, &ph[k]);
        own_cpu[k] = self_cpu_s() - self0;
        if (sp->pid > 0 && server_alive(sp))
            after = read_proc_stats(sp->pid);
        if (before.ok && after.ok)
            srv_cpu[k] = after.cpu_s - before.cpu_s;
        if (sp->pid > 0 && !server_alive(sp)) {
            char how[64];
            describe_exit(sp->status, how, sizeof how);
            fprintf(stderr, "pcsig-bench: the server died during the %s handshakes (%s)\n",
                    names[k], how);
            fatal = true;
        } else if (rc < 0) {
            log_errno(LOG_ERROR, rc, "the %s handshakes did not finish", names[k]);
            fatal = true;
        }
    }
    bool server_died = sp->pid > 0 && sp->exited;
    struct proc_stats ps = {0};
    if (sp->pid > 0 && server_alive(sp))
        ps = read_proc_stats(sp->pid);
    stop_server(sp);

    printf("handshake details: parallel=%u request=sign_in+sign_out", b->o.hs_parallel);
    for (int k = 0; k < 2; k++) {
        const struct bench_hs_phase *p = &ph[k];
        printf("; %s: done=%" PRIu64 " failed=%" PRIu64 " resumed=%" PRIu64 " wall_s=%.3f"
               " hs_p50=%.3f hs_p99=%.3f conn_p50=%.3f conn_p99=%.3f ms bench_cpu_s=%.2f",
               names[k], p->done, p->failed, p->resumed, p->wall_s,
               hist_quantile(&p->hs, 0.5) / 1000.0, hist_quantile(&p->hs, 0.99) / 1000.0,
               hist_quantile(&p->total, 0.5) / 1000.0, hist_quantile(&p->total, 0.99) / 1000.0,
               own_cpu[k]);
        if (srv_cpu[k] >= 0 && p->done)
            printf(" server_ms_per_conn=%.3f", srv_cpu[k] * 1000.0 / (double)p->done);
    }
    printf("\n");
    printf("handshakes full=%" PRIu64 " rate=%.0f/s; resumed=%" PRIu64
           " rate=%.0f/s (reused=%" PRIu64 ")",
           ph[0].done, ph[0].wall_s > 0 ? (double)ph[0].done / ph[0].wall_s : 0.0, ph[1].done,
           ph[1].wall_s > 0 ? (double)ph[1].done / ph[1].wall_s : 0.0, ph[1].resumed);
    if (srv_cpu[0] >= 0 && srv_cpu[1] >= 0)
        printf(" server_cpu_s full=%.2f resumed=%.2f", srv_cpu[0], srv_cpu[1]);
    if (ps.ok)
        printf(" server_rss_mb=%.1f", ps.rss_mb);
    printf("\n");
    fflush(stdout);

    if (sp->pid > 0 && sp->exited && !server_died &&
        !(WIFEXITED(sp->status) && WEXITSTATUS(sp->status) == 0)) {
        char how[64];
        describe_exit(sp->status, how, sizeof how);
        fprintf(stderr, "pcsig-bench: the server did not stop cleanly on SIGTERM (%s)\n", how);
        fatal = true;
    }
    bool bad = ph[0].failed || ph[1].failed || ph[0].done < b->o.handshakes ||
               ph[1].done < b->o.handshakes || ph[0].resumed > 0 ||
               (b->o.handshakes > b->o.hs_parallel && ph[1].resumed == 0);
    if (ph[0].resumed > 0)
        fprintf(stderr, "pcsig-bench: %" PRIu64 " handshakes resumed with fresh clients\n",
                ph[0].resumed);
    if (!fatal && b->o.handshakes > b->o.hs_parallel && ph[1].resumed == 0)
        fprintf(stderr, "pcsig-bench: no handshake resumed with a shared client\n");
    free(ph);
    return fatal ? EXIT_FATAL : bad ? EXIT_CHECK : 0;
}

int main(int argc, char **argv)
{
    static struct bench bench; /* the run's state: one named place */
    struct bench *b = &bench;
    struct server_proc sp = {.pid = 0, .out_fd = -1};
    struct bench_send_stats ss;
    struct bench_churn *churn = NULL; /* --churn: its thread, while messages flow */
    static struct bench_hist lat;
    uint64_t last_delivery_ns = 0;
    int rc;

    log_set_thread_role("main");
    log_set_level(LOG_WARN);
    if (parse_args(argc, argv, &b->o) < 0)
        return EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(); /* before spawning: the server inherits the limit */

    if (b->o.spawn) {
        uint16_t port = 0;
        rc = spawn_server(&b->o, &sp, &port);
        if (rc < 0) {
            if (sp.pid > 0 && !server_alive(&sp)) {
                char how[64];
                describe_exit(sp.status, how, sizeof how);
                fprintf(stderr, "pcsig-bench: %s exited before listening (%s)\n", b->o.spawn, how);
            } else {
                log_errno(LOG_ERROR, rc, "%s did not report its port", b->o.spawn);
            }
            stop_server(&sp);
            return EXIT_FATAL;
        }
        b->o.host = "127.0.0.1";
        b->o.port = port;
    }
    if (resolve_server(b, b->o.host, b->o.port) < 0 || alloc_state(b) < 0) {
        stop_server(&sp);
        return EXIT_FATAL;
    }
    if (b->o.tls) {
        /* Each thread makes its own client context; fail early on a bad --ca. */
        tls_client_t *probe = NULL;
        if (!b->o.tls_name)
            b->o.tls_name = b->o.host;
        if (bench_tls_client(b, &probe) < 0) {
            stop_server(&sp);
            return EXIT_FATAL;
        }
        tls_client_free(probe);
    }
    if (b->o.handshakes) {
        rc = run_handshakes(b, &sp);
        free_state(b);
        return rc;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        (uint64_t)b->o.peers + (uint64_t)b->o.senders * b->o.inflight + 64 > rl.rlim_cur)
        log_warn("%u peers and %u x %u senders may not fit in %llu file descriptors",
                 b->o.peers, b->o.senders, b->o.inflight, (unsigned long long)rl.rlim_cur);

    struct run r = {.b = b, .sp = &sp, .phase_name = "sign-in and joins"};
    b->t0_ns = bench_now_ns();
    r.deadline_ns = b->t0_ns + (uint64_t)(b->o.timeout_s * 1e9);
    r.next_progress_ns = b->t0_ns + PROGRESS_EVERY_NS;

    /* 1. Sign in and drain the joins. */
    bool ok = true;
    if ((rc = bench_loops_start(b)) < 0) {
        log_errno(LOG_ERROR, rc, "cannot start the receiver loops");
        atomic_store(&b->stop, true);
        ok = false;
        r.fatal = true;
    }
    ok = ok && wait_for(&r, joined, UINT64_MAX) && atomic_load(&b->signin_failed) == 0;
    uint64_t t_join_end = atomic_load(&b->t_joined_ns);
    if (atomic_load(&b->t_signed_in_ns) > t_join_end)
        t_join_end = atomic_load(&b->t_signed_in_ns);
    double join_s = (double)((ok ? t_join_end : bench_now_ns()) - b->t0_ns) / 1e9;
    double signin_s = atomic_load(&b->t_signed_in_ns)
                          ? (double)(atomic_load(&b->t_signed_in_ns) - b->t0_ns) / 1e9
                          : -1;

    /* 2. Relay the messages; then wait for what is still in flight. The
     * server's CPU time over this phase alone, per message, excludes the
     * joins (N(N-1)/2 deliveries that would swamp a short run). */
    pid_t cpu_pid = sp.pid > 0 ? sp.pid : (pid_t)b->o.server_pid;
    struct proc_stats relay0 = {0};
    if (cpu_pid > 0)
        relay0 = read_proc_stats(cpu_pid);
    uint64_t t_send0 = bench_now_ns();
    if (ok && b->o.messages > 0) {
        atomic_store(&b->phase, PH_RUN);
        r.phase_name = "messages";
        if ((rc = bench_senders_start(b)) < 0) {
            log_errno(LOG_ERROR, rc, "cannot start the senders");
            atomic_store(&b->stop, true);
            r.fatal = true;
            ok = false;
        }
        if (ok && b->o.churn_rate > 0 && (rc = bench_churn_start(b, &churn)) < 0) {
            log_errno(LOG_ERROR, rc, "cannot start the churn thread");
            atomic_store(&b->stop, true);
            r.fatal = true;
            ok = false;
        }
        ok = ok && wait_for(&r, all_settled, UINT64_MAX);
        if (!ok)
            atomic_store(&b->stop, true); /* the senders stop too */
    }
    bench_churn_join(churn); /* churn ends with the messages */
    bench_senders_join(b, &ss);
    uint64_t t_send1 = bench_now_ns();
    if (ok) {
        r.accepted = ss.accepted;
        r.phase_name = "drain";
        uint64_t until = bench_now_ns() + (uint64_t)(b->o.drain_s * 1e9);
        if (!wait_for(&r, drained, until) && (r.timed_out || r.fatal))
            ok = false;
    }

    /* 3. The server's figures, then the end of the run. */
    struct proc_stats ps = {0};
    if (sp.pid > 0 && server_alive(&sp))
        ps = read_proc_stats(sp.pid);
    struct proc_stats relay1 = {0};
    if (cpu_pid > 0 && (sp.pid <= 0 || server_alive(&sp)))
        relay1 = sp.pid > 0 ? ps : read_proc_stats(cpu_pid);
    if (b->o.sign_out && !r.fatal && !r.timed_out && !atomic_load(&b->stop)) {
        r.phase_name = "sign-out";
        atomic_store(&b->phase, PH_SIGNOUT);
        wait_for(&r, signed_out, bench_now_ns() + (uint64_t)(SIGNOUT_WAIT_S * 1e9));
    }
    atomic_store(&b->phase, PH_STOP);
    atomic_store(&b->stop, true);
    bench_loops_join(b, &lat, &last_delivery_ns);
    bool server_died = sp.pid > 0 && sp.exited;
    stop_server(&sp);

    /* 4. Report. */
    uint64_t delivered = atomic_load(&b->delivered), dups = atomic_load(&b->dups);
    uint64_t reordered = atomic_load(&b->reordered), corrupt = atomic_load(&b->corrupt);
    uint64_t lost = ss.accepted > delivered ? ss.accepted - delivered : 0;
    uint64_t span =
        ss.first_ns && last_delivery_ns > ss.first_ns ? last_delivery_ns - ss.first_ns : 0;
    double rate = span ? (double)delivered / ((double)span / 1e9) : 0;
    double send_s = (double)(t_send1 - t_send0) / 1e9;
    double self_cpu = self_cpu_s();

    printf("mode=%s loops=%u senders=%u inflight=%u size=%zu offered=%s signin_s=%.3f send_s=%.3f"
           " sent=%" PRIu64 " accepted=%" PRIu64 " refused=%" PRIu64 " busy503=%" PRIu64
           " conn_errors=%" PRIu64 " wait_errors=%" PRIuFAST64 " corrupt=%" PRIu64
           " unexpected=%" PRIuFAST64 " gone=%" PRIuFAST64 " leaves=%" PRIuFAST64
           " idle=%" PRIuFAST64 " signed_out=%" PRIuFAST64 " max_ms=%.3f bench_cpu_s=%.2f",
           b->o.keepalive ? (b->o.batch ? "keepalive+batch" : "keepalive")
                          : (b->o.batch ? "stock+batch" : "stock"),
           b->o.loops, b->o.senders, b->o.inflight,
           b->o.size, b->o.rate > 0 ? "rate" : "closed", signin_s, send_s, ss.sent, ss.accepted,
           ss.refused, ss.busy503, ss.conn_errors, atomic_load(&b->wait_errors), corrupt,
           atomic_load(&b->unexpected), atomic_load(&b->gone), atomic_load(&b->leaves),
           atomic_load(&b->idle_answers), atomic_load(&b->signed_out), (double)lat.max_us / 1000.0,
           self_cpu);
    if (b->o.batch)
        printf(" batch_answers=%" PRIu64 " batch_records=%" PRIu64
               " records_per_batch_mean=%.2f records_per_batch_max=%" PRIu64,
               b->batch_answers, b->batch_records,
               b->batch_answers ? (double)b->batch_records / (double)b->batch_answers : 0.0,
               b->batch_max);
    uint64_t churn_in = atomic_load(&b->churn_signins), churn_out = atomic_load(&b->churn_signouts);
    uint64_t churn_joins = atomic_load(&b->churn_joins), churn_leaves = atomic_load(&b->churn_leaves);
    bool churn_bad = b->o.churn_rate > 0 &&
                     (atomic_load(&b->churn_failed) || churn_joins != churn_expected(b, churn_in) ||
                      churn_leaves != churn_expected(b, churn_out));
    if (b->o.churn_rate > 0)
        printf(" churn_signins=%" PRIu64 " churn_signouts=%" PRIu64 " churn_failed=%" PRIuFAST64
               " churn_joins=%" PRIu64 "/%" PRIu64 " churn_leaves=%" PRIu64 "/%" PRIu64,
               churn_in, churn_out, atomic_load(&b->churn_failed), churn_joins,
               churn_expected(b, churn_in), churn_leaves, churn_expected(b, churn_out));
    if (b->o.churn_rate > 0)
        printf(" churn_signin_p50=%.3f churn_signin_p99=%.3f churn_connect_signin_p50=%.3f"
               " churn_connect_signin_p99=%.3f ms",
               hist_quantile(&b->churn_signin_us, 0.5) / 1000.0,
               hist_quantile(&b->churn_signin_us, 0.99) / 1000.0,
               hist_quantile(&b->churn_connect_us, 0.5) / 1000.0,
               hist_quantile(&b->churn_connect_us, 0.99) / 1000.0);
    if (b->o.tls)
        printf(" tls_handshakes_full=%" PRIuFAST64 " tls_handshakes_resumed=%" PRIuFAST64
               " tls_handshakes_failed=%" PRIuFAST64,
               atomic_load(&b->tls_full), atomic_load(&b->tls_resumed),
               atomic_load(&b->tls_failed));
    printf("\n");
    if (b->o.rate > 0)
        printf("offered_rate=%.0f/s achieved_send_rate=%.0f/s\n", b->o.rate,
               send_s > 0 ? (double)ss.sent / send_s : 0.0);
    printf("peers=%u msgs=%" PRIu64 " delivered=%" PRIu64 " lost=%" PRIu64 " dup=%" PRIu64
           " reordered=%" PRIu64 " join_s=%.3f rate=%.0f/s p50=%.3f p99=%.3f p999=%.3f ms",
           b->o.peers, b->o.messages, delivered, lost, dups, reordered, join_s, rate,
           hist_quantile(&lat, 0.50) / 1000.0, hist_quantile(&lat, 0.99) / 1000.0,
           hist_quantile(&lat, 0.999) / 1000.0);
    if (ps.ok)
        printf(" server_rss_mb=%.1f server_cpu_s=%.2f server_threads=%ld", ps.rss_mb, ps.cpu_s,
               ps.threads);
    if (relay0.ok && relay1.ok && delivered)
        printf(" relay_cpu_us_per_msg=%.1f",
               (relay1.cpu_s - relay0.cpu_s) * 1e6 / (double)delivered);
    printf("\n");
    fflush(stdout);

    if (sp.pid > 0 && sp.exited && !server_died &&
        !(WIFEXITED(sp.status) && WEXITSTATUS(sp.status) == 0)) {
        char how[64];
        describe_exit(sp.status, how, sizeof how);
        fprintf(stderr, "pcsig-bench: the server did not stop cleanly on SIGTERM (%s)\n", how);
        r.fatal = true;
    }
    free_state(b);
    if (r.timed_out || r.fatal)
        return EXIT_FATAL;
    bool bad = lost || dups || reordered || corrupt || ss.refused || churn_bad ||
               atomic_load(&b->signin_failed) || atomic_load(&b->unexpected) ||
               atomic_load(&b->gone) || delivered < ss.accepted ||
               ss.sent < b->o.messages;
    return bad ? EXIT_CHECK : 0;
}
