/*
 * server: the lifecycle. Start-up (listeners, threads, the auth-token and
 * port files), SIGHUP reload, metrics snapshot and the graceful stop. The
 * threads live in files named for their roles: acceptor.c, poller.c,
 * workers.c, reaper.c (their shared declarations: server_threads.h).
 */
#include "server_threads.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cluster.h"
#include "log.h"
#include "procstat.h"
#include "response.h"
#include "session.h"
#include "web.h"

#define LISTEN_BACKLOG 65535 /* the kernel caps it at net.core.somaxconn */

static size_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            log_errno(LOG_WARN, errno, "setrlimit(NOFILE)");
            rl.rlim_cur = old;
        }
    }
    log_info("open-file limit %llu", (unsigned long long)rl.rlim_cur);
    return rl.rlim_cur == RLIM_INFINITY ? 1000000 : (size_t)rl.rlim_cur;
}

/* Small answers go out at once: without TCP_NODELAY, the first answer
 * after a TLS 1.3 handshake waits ~40 ms for the client's delayed ACK. Set
 * on the listeners, every accepted socket inherits it (Linux copies it on
 * accept): one setsockopt() per listener instead of one per connection. */
static void set_listeners_nodelay(struct server *srv)
{
    int one = 1;
    for (int i = 0; i < srv->nlisten; i++)
        if (setsockopt(srv->listen_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            log_errno(LOG_WARN, errno, "setsockopt(TCP_NODELAY) on a listener");
}

static int write_port_file(const char *path, uint16_t port)
{
    buf_t tmp;
    buf_init(&tmp, 4096);
    int rc = buf_printf(&tmp, "%s.tmp", path);
    if (rc == 0 && buf_append(&tmp, "", 1) == 0) {
        FILE *f = fopen(tmp.data, "w");
        if (!f || fprintf(f, "%u\n", (unsigned)port) < 0 || fclose(f) != 0)
            rc = -errno;
        else if (rename(tmp.data, path) < 0)
            rc = -errno;
    }
    buf_free(&tmp);
    return rc;
}

static int add_token(struct server *srv, const char *tok, size_t len)
{
    char **grown = realloc(srv->auth_tokens, (srv->nauth_tokens + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    srv->auth_tokens = grown;
    char *copy = strndup(tok, len);
    if (!copy)
        return -ENOMEM;
    srv->auth_tokens[srv->nauth_tokens++] = copy;
    return 0;
}

/* The sign-in tokens: --auth-token, plus each non-empty line of the file. */
static int load_auth_tokens(struct server *srv, const struct server_config *cfg)
{
    int rc = 0;
    if (cfg->auth_token && (rc = add_token(srv, cfg->auth_token, strlen(cfg->auth_token))) < 0)
        return rc;
    if (!cfg->auth_token_file)
        return 0;
    FILE *f = fopen(cfg->auth_token_file, "r");
    if (!f) {
        rc = -errno;
        log_errno(LOG_ERROR, errno, "cannot read --auth-token-file %s", cfg->auth_token_file);
        return rc;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        if (n > 0 && line[0] != '#')
            rc = add_token(srv, line, (size_t)n);
    }
    free(line);
    fclose(f);
    if (rc == 0 && srv->nauth_tokens == 0) {
        log_error("--auth-token-file %s holds no token", cfg->auth_token_file);
        rc = -EINVAL;
    }
    return rc;
}

/* The --metrics-bind listener(s): plain HTTP, /health and /metrics only. */
static int listen_metrics(struct server *srv, const char *spec)
{
    char *host = NULL;
    uint16_t port = 0;
    int err = net_parse_host_port(spec, &host, &port);
    if (err < 0) {
        log_errno(LOG_ERROR, -err, "bad --metrics-bind %s (want ADDR:PORT)", spec);
        return err;
    }
    int n = 0;
    err = net_listen(host, port, LISTEN_BACKLOG, srv->listen_fds + srv->nlisten, &n);
    if (err < 0) {
        log_errno(LOG_ERROR, -err, "cannot listen for metrics on %s", spec);
    } else {
        srv->metrics_port = (uint16_t)net_local_port(srv->listen_fds[srv->nlisten]);
        for (int i = 0; i < n; i++) {
            srv->listen_tls[srv->nlisten + i] = false; /* plain even when the main port is TLS */
            srv->listen_metrics[srv->nlisten + i] = true;
        }
        srv->nlisten += n;
        log_info("metrics: /health and /metrics on %s port %u only", host,
                 (unsigned)srv->metrics_port);
    }
    free(host);
    return err;
}

void server_metrics_snapshot(struct server *srv, struct metrics_snapshot *out)
{
    memset(out, 0, sizeof *out);
    metrics_read(&srv->metrics, out);
    reg_stats_t rs;
    reg_get_stats(srv->reg, &rs);
    out->members = rs.members;
    out->parked_waits = rs.parked;
    out->queued_messages = rs.queued_msgs;
    out->queued_bytes = rs.queued_bytes;
    out->notifications_logged = rs.notes_logged;
    out->messages_accepted = rs.messages_accepted;
    out->messages_refused = rs.messages_refused;
    out->messages_dropped = rs.messages_dropped;
    out->member_timeouts = rs.timeouts;
    out->wait_timeouts = rs.wait_timeouts;
    if (srv->tls) {
        struct tls_server_stats ts;
        tls_server_stats(srv->tls, &ts);
        out->tls_full = ts.full;
        out->tls_resumed = ts.resumed;
        out->tls_failed = ts.failed;
    }
    struct procstat ps;
    if (procstat_read(&ps)) {
        out->has_process = true;
        out->process_resident_bytes = ps.resident_bytes;
        out->process_virtual_bytes = ps.virtual_bytes;
        out->process_cpu_us = ps.cpu_us;
        out->process_open_fds = ps.open_fds;
        out->process_max_fds = ps.max_fds;
    }
    out->open_connections = atomic_load(&srv->open_conns);
    out->worker_queue_depth = atomic_load_explicit(&srv->wq_depth, memory_order_relaxed);
    out->output_held_bytes = atomic_load(&srv->out_held);
    out->draining = atomic_load(&srv->draining);
    out->version = PCSIG_VERSION;
    out->start_time_unix_s = srv->started_unix_s;
    out->uptime_ms = clock_now_ms() - srv->started_ms;
}

/* An expired (or not yet valid) certificate is still served, but every
 * verifying client will refuse it: say so where the operator looks. */
static void warn_cert_validity(struct server *srv, const char *when)
{
    char why[512] = "";
    if (srv->tls && tls_server_cert_validity(srv->tls, why, sizeof why) < 0)
        log_warn("%s: %s; clients that verify it will refuse to connect", when, why);
}

/* --cluster: the instance is named host:port unless --instance-name says. */
static int start_cluster(struct server *srv)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) < 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    char name[300];
    snprintf(name, sizeof name, "%s:%u", host, (unsigned)srv->port);
    return cluster_create(&srv->cfg, srv->reg, name, &srv->cluster);
}

struct server *server_new(void)
{
    return calloc(1, sizeof(struct server));
}

bool server_failed(struct server *srv)
{
    return atomic_load(&srv->failed);
}

void server_free(struct server *srv)
{
    free(srv);
}

int server_start(struct server *srv, const struct server_config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    srv->epfd = srv->acceptor_wake_fd = srv->poller_wake_fd = -1;
    pthread_mutex_init(&srv->wq_lock, NULL);
    pthread_cond_init(&srv->wq_cond, NULL);
    pthread_mutex_init(&srv->sessions_lock, NULL);
    clock_cond_init(&srv->sessions_cond);
    pthread_mutex_init(&srv->grave_lock, NULL);
    pthread_mutex_init(&srv->reaper_lock, NULL);
    clock_cond_init(&srv->reaper_cond);
    atomic_init(&srv->draining, false);
    atomic_init(&srv->poller_stop, false);
    atomic_init(&srv->open_conns, 0);
    atomic_init(&srv->tls_refusals, 0);
    atomic_init(&srv->failed, false);
    atomic_init(&srv->quit_claimed, false);
    atomic_init(&srv->quit_set, false);
    buf_init(&srv->quit_why, 0);
    buf_init(&srv->busy_answer, 4096);
    buf_init(&srv->per_ip_answer, 4096);
    atomic_init(&srv->wq_depth, 0);
    atomic_init(&srv->out_held, 0);
    atomic_init(&srv->out_pressure, false);
    metrics_init(&srv->metrics);
    access_init(&srv->access, &srv->metrics, cfg->access_log_every);
    srv->started_ms = clock_now_ms();
    srv->started_unix_s = clock_wall_s();

    size_t fd_limit = raise_fd_limit();
    if (srv->cfg.max_connections == 0)
        srv->cfg.max_connections = fd_limit > 128 ? fd_limit - 64 : 64;

    reg_config_t rc = {
        .member_timeout_ms = cfg->member_timeout_ms,
        .wait_timeout_ms = cfg->wait_timeout_ms,
        .max_members = cfg->max_members,
        .queue_max_msgs = cfg->queue_max_msgs,
        .queue_max_bytes = cfg->queue_max_bytes,
        .secure_ids = cfg->secure_ids,
        .no_notes = cfg->cluster != NULL,
    };
    int err = load_auth_tokens(srv, cfg);
    if (err < 0)
        goto fail;
    srv->rl = rl_create(cfg->max_conns_per_ip, (double)cfg->rate_limit);
    if (!srv->rl) {
        err = -ENOMEM;
        goto fail;
    }
    /* srv->cfg, not cfg: the page keeps a pointer to the server's copy. */
    if (cfg->web && (err = web_create(&srv->cfg, &srv->web)) < 0)
        goto fail;
    srv->reg = reg_create(&rc);
    if (!srv->reg) {
        err = -ENOMEM;
        goto fail;
    }
    if (resp_append_outcome(&srv->busy_answer, OUTCOME_BUSY, false, 0) < 0 ||
        resp_append_outcome(&srv->per_ip_answer, OUTCOME_PER_IP, false, 0) < 0) {
        err = -ENOMEM;
        goto fail;
    }
    if (cfg->tls_cert) {
        char why[256] = "";
        buf_t plain;
        buf_init(&plain, 4096);
        struct tls_server_options to = {.cert_file = cfg->tls_cert, .key_file = cfg->tls_key,
                                        .client_ca_file = cfg->tls_client_ca};
        if (resp_append_outcome(&plain, OUTCOME_PLAIN_HTTP_ON_TLS, false, 0) == 0) {
            to.plain_http_answer = plain.data;
            to.plain_http_answer_len = plain.len;
        }
        err = tls_server_new(&to, &srv->tls, why, sizeof why);
        buf_free(&plain);
        if (err < 0) {
            log_error("TLS: %s", why);
            goto fail;
        }
    }
    err = net_listen(cfg->bind, cfg->port, LISTEN_BACKLOG, srv->listen_fds, &srv->nlisten);
    if (err < 0) {
        /* The one line of this failure (main adds none): address, port, reason. */
        log_errno(LOG_ERROR, -err, cfg->bind ? "cannot listen on %s port %u"
                                             : "cannot listen on %sport %u (every address)",
                  cfg->bind ? cfg->bind : "", (unsigned)cfg->port);
        goto fail;
    }
    srv->port = (uint16_t)net_local_port(srv->listen_fds[0]);
    /* Without --tls-port, the main port itself speaks TLS. */
    for (int i = 0; i < srv->nlisten; i++)
        srv->listen_tls[i] = srv->tls && cfg->tls_port < 0;
    if (srv->tls && cfg->tls_port >= 0) {
        int nt = 0;
        err = net_listen(cfg->bind, (uint16_t)cfg->tls_port, LISTEN_BACKLOG,
                         srv->listen_fds + srv->nlisten, &nt);
        if (err < 0) {
            log_errno(LOG_ERROR, -err, cfg->bind ? "cannot listen on %s TLS port %d"
                                                 : "cannot listen on %sTLS port %d (every address)",
                      cfg->bind ? cfg->bind : "", cfg->tls_port);
            goto fail;
        }
        srv->tls_port = (uint16_t)net_local_port(srv->listen_fds[srv->nlisten]);
        for (int i = 0; i < nt; i++)
            srv->listen_tls[srv->nlisten + i] = true;
        srv->nlisten += nt;
    }
    if (cfg->metrics_bind && (err = listen_metrics(srv, cfg->metrics_bind)) < 0)
        goto fail;
    set_listeners_nodelay(srv);
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    srv->acceptor_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    srv->poller_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->epfd < 0 || srv->acceptor_wake_fd < 0 || srv->poller_wake_fd < 0) {
        err = -errno;
        log_errno(LOG_ERROR, errno, "epoll/eventfd");
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->poller_wake_fd, &ev) < 0) {
        err = -errno;
        goto fail;
    }
    if (cfg->cluster && (err = start_cluster(srv)) < 0)
        goto fail;
    srv->workers = calloc((size_t)cfg->workers, sizeof *srv->workers);
    if (!srv->workers) {
        err = -ENOMEM;
        goto fail;
    }
    if ((err = -pthread_create(&srv->poller, NULL, poller_main, srv)) < 0)
        goto fail;
    srv->poller_started = true;
    for (int i = 0; i < cfg->workers; i++) {
        if ((err = -pthread_create(&srv->workers[i], NULL, worker_main, srv)) < 0)
            goto fail;
        srv->nworkers_started++;
    }
    if ((err = -pthread_create(&srv->reaper, NULL, reaper_main, srv)) < 0)
        goto fail;
    srv->reaper_started = true;
    if ((err = -pthread_create(&srv->acceptor, NULL, acceptor_main, srv)) < 0)
        goto fail;
    srv->acceptor_started = true;

    /* Without --tls-port the main port itself speaks TLS: say so, here and
     * in the ready line, so nobody points plain HTTP at it. */
    bool main_tls = srv->nlisten > 0 && srv->listen_tls[0];
    if (srv->tls_port)
        log_info("listening on %s port %u and TLS port %u (%d workers, max %zu connections)",
                 cfg->bind ? cfg->bind : "*", (unsigned)srv->port, (unsigned)srv->tls_port,
                 cfg->workers, srv->cfg.max_connections);
    else
        log_info("listening on %s %sport %u (%d workers, max %zu connections)",
                 cfg->bind ? cfg->bind : "*", main_tls ? "TLS " : "", (unsigned)srv->port,
                 cfg->workers, srv->cfg.max_connections);
    warn_cert_validity(srv, "TLS");
    if (cfg->port_file && (err = write_port_file(cfg->port_file, srv->port)) < 0) {
        log_errno(LOG_ERROR, -err, "cannot write port file %s", cfg->port_file);
        goto fail;
    }
    /* Written before the ready line, so whoever waits for that line finds it. */
    if (cfg->metrics_port_file &&
        (err = write_port_file(cfg->metrics_port_file, srv->metrics_port)) < 0) {
        log_errno(LOG_ERROR, -err, "cannot write metrics port file %s", cfg->metrics_port_file);
        goto fail;
    }
    printf("pcsig-server listening on %sport %u\n", main_tls ? "TLS " : "", (unsigned)srv->port);
    if (srv->tls_port)
        printf("pcsig-server listening on TLS port %u\n", (unsigned)srv->tls_port);
    fflush(stdout);
    return 0;
fail:
    server_stop(srv);
    return err ? err : -EIO;
}

void server_reload(struct server *srv)
{
    if (!srv->tls) {
        log_info("SIGHUP: no TLS certificate to reload");
        return;
    }
    char why[256] = "";
    if (tls_server_reload(srv->tls, why, sizeof why) < 0)
        log_error("SIGHUP: TLS reload failed, keeping the current certificate: %s", why);
    else
        log_info("SIGHUP: TLS certificate and key reloaded");
    warn_cert_validity(srv, "SIGHUP");
}

void server_request_quit(struct server *srv, const char *cause, const char *remote)
{
    /* The first request names the cause; later ones (a second /quit) only
     * repeat the signal. Out of memory, main says "SIGTERM" as before. */
    if (!atomic_exchange(&srv->quit_claimed, true)) {
        buf_t *w = &srv->quit_why;
        buf_init(w, 256);
        int rc = remote ? buf_printf(w, "%s from %s", cause, remote) : buf_append_str(w, cause);
        if (rc == 0 && buf_append(w, "", 1) == 0)
            atomic_store(&srv->quit_set, true);
    }
    /* Every thread blocks SIGTERM; main's sigwaitinfo() takes it from here. */
    kill(getpid(), SIGTERM);
}

const char *server_quit_reason(struct server *srv)
{
    return atomic_load(&srv->quit_set) ? srv->quit_why.data : NULL;
}

void server_stop(struct server *srv)
{
    /* The acceptor stops first: a session it is still arming must not be
     * claimed by the draining reaper before it is in epoll. */
    if (srv->acceptor_started) {
        eventfd_poke(srv->acceptor_wake_fd);
        pthread_join(srv->acceptor, NULL);
        srv->acceptor_started = false;
    }
    for (int i = 0; i < srv->nlisten; i++)
        close(srv->listen_fds[i]);
    srv->nlisten = 0;
    atomic_store(&srv->draining, true);

    if (srv->reg)
        reg_shutdown(srv->reg);

    /* Let answers flush and idle connections close, within the grace period. */
    if (srv->reaper_started && srv->poller_started && srv->nworkers_started) {
        struct timespec until = clock_deadline_in(srv->cfg.shutdown_grace_ms);
        pthread_mutex_lock(&srv->sessions_lock);
        while (srv->nsessions > 0 &&
               pthread_cond_timedwait(&srv->sessions_cond, &srv->sessions_lock, &until) == 0)
            ;
        if (srv->nsessions)
            log_warn("%zu connection(s) still open after the grace period; closing",
                     srv->nsessions);
        pthread_mutex_unlock(&srv->sessions_lock);
    }

    if (srv->reaper_started) {
        pthread_mutex_lock(&srv->reaper_lock);
        srv->reaper_stop = true;
        pthread_cond_signal(&srv->reaper_cond);
        pthread_mutex_unlock(&srv->reaper_lock);
        pthread_join(srv->reaper, NULL);
        srv->reaper_started = false;
    }
    pthread_mutex_lock(&srv->wq_lock);
    srv->wq_stop = true;
    pthread_cond_broadcast(&srv->wq_cond);
    pthread_mutex_unlock(&srv->wq_lock);
    for (int i = 0; i < srv->nworkers_started; i++)
        pthread_join(srv->workers[i], NULL);
    srv->nworkers_started = 0;
    if (srv->poller_started) {
        atomic_store(&srv->poller_stop, true);
        eventfd_poke(srv->poller_wake_fd);
        pthread_join(srv->poller, NULL);
        srv->poller_started = false;
    }

    /* One thread left: close and free whatever is still open. */
    server_free_graveyard(srv);
    struct session *s = srv->sessions;
    while (s) {
        struct session *next = s->next;
        session_force_close(s);
        session_free(s);
        s = next;
    }
    srv->sessions = NULL;
    srv->nsessions = 0;
    srv->wq_head = srv->wq_tail = NULL;

    free(srv->workers);
    srv->workers = NULL;
    tls_server_free(srv->tls);
    srv->tls = NULL;
    rl_destroy(srv->rl);
    srv->rl = NULL;
    web_free(srv->web);
    srv->web = NULL;
    for (size_t i = 0; i < srv->nauth_tokens; i++) {
        /* Secrets do not linger in freed memory. */
        explicit_bzero(srv->auth_tokens[i], strlen(srv->auth_tokens[i]));
        free(srv->auth_tokens[i]);
    }
    free(srv->auth_tokens);
    srv->auth_tokens = NULL;
    srv->nauth_tokens = 0;
    cluster_destroy(srv->cluster); /* after the workers: none calls it now */
    srv->cluster = NULL;
    reg_destroy(srv->reg);
    srv->reg = NULL;
    atomic_store(&srv->quit_set, false);
    buf_free(&srv->quit_why);
    buf_free(&srv->busy_answer);
    buf_free(&srv->per_ip_answer);
    if (srv->epfd >= 0)
        close(srv->epfd);
    if (srv->acceptor_wake_fd >= 0)
        close(srv->acceptor_wake_fd);
    if (srv->poller_wake_fd >= 0)
        close(srv->poller_wake_fd);
    srv->epfd = srv->acceptor_wake_fd = srv->poller_wake_fd = -1;
    pthread_mutex_destroy(&srv->wq_lock);
    pthread_cond_destroy(&srv->wq_cond);
    pthread_mutex_destroy(&srv->sessions_lock);
    pthread_cond_destroy(&srv->sessions_cond);
    pthread_mutex_destroy(&srv->grave_lock);
    pthread_mutex_destroy(&srv->reaper_lock);
    pthread_cond_destroy(&srv->reaper_cond);
}
