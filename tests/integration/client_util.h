/*
 * Shared by the client tests (test_client_lib, test_client_wire,
 * test_client_tls, test_client_auth, test_cli, test_cli_exec, test_cli_tty):
 * library clients freed by the teardown and checks on their events, a
 * scripted server with the original's exact answers, the CLI run over pipes,
 * and throw-away certificate authorities.
 */
#ifndef PCSIG_TEST_CLIENT_UTIL_H
#define PCSIG_TEST_CLIENT_UTIL_H

#include "harness.h"

#include <stdbool.h>
#include <stdint.h>

#include "pcsig_client.h"

#define T_EVENT_MS 10000 /* one expected event */
#define T_QUIET_MS 300   /* "nothing else arrives" windows */
#define T_MAX_CLIENTS 8
extern pcsig_client_t *clients[T_MAX_CLIENTS];

int t_teardown(void **state);

#define T_TEST(f) cmocka_unit_test_setup_teardown(f, h_setup, t_teardown)
pcsig_client_t *client_on(uint16_t port, const char *name, bool keep_alive,
                          int wait_timeout_ms);

pcsig_client_t *client(const h_server_t *s, const char *name);

void client_free(pcsig_client_t *c);

/* The next event, which must be of type t (and arrive within T_EVENT_MS). */
#define expect_ev(c, t) (h_at(__FILE__, __LINE__), expect_ev_((c), (t), __FILE__, __LINE__))

struct pcsig_event *expect_ev_(pcsig_client_t *c, enum pcsig_event_type t,
                               const char *file, int line);

/* The first event of type t, dropping others of the types in skip (a mask
 * of 1 << type); any other event fails the test. */
#define await_ev(c, t, skip) (h_at(__FILE__, __LINE__), await_ev_((c), (t), (skip), __FILE__, __LINE__))

struct pcsig_event *await_ev_(pcsig_client_t *c, enum pcsig_event_type t, unsigned skip,
                              const char *file, int line);

/* No event at all within ms. */
void expect_quiet(pcsig_client_t *c, int ms);

uint64_t signed_in(pcsig_client_t *c, size_t npeers);

void expect_peer(pcsig_client_t *c, enum pcsig_event_type t, uint64_t id, const char *name);

int64_t send_ok(pcsig_client_t *c, uint64_t to, const char *ctype, const void *p, size_t n);

void expect_sent(pcsig_client_t *c, int64_t token, uint64_t to);

void expect_message(pcsig_client_t *c, uint64_t from, const char *ctype, const void *p,
                    size_t n);

/* Send a string and check both ends: the sender's ack, the receiver's copy. */
void relay(pcsig_client_t *from, uint64_t from_id, pcsig_client_t *to, uint64_t to_id,
           const char *text);

void disconnect_clean(pcsig_client_t *c);

#define SKIP_NOISE ((1u << PCSIG_EV_SERVER_UNREACHABLE))
struct fake {
    int lfd;
    uint16_t port;
};

void fake_start(struct fake *f);

int fake_accept(struct fake *f);

void fake_expect(int fd, const char *want);

/* An answer laid out exactly as the original's DataSocket::Send (B 4.1). */
void fake_answer_ka(int fd, const char *status, const char *ctype, long pragma,
                    const char *body, bool keep);

void fake_answer(int fd, const char *status, const char *ctype, long pragma,
                 const char *body);

/* The original never closes after answering: the client must (B 7.4). */
void fake_expect_client_close(int fd);

void *disconnect_thread(void *arg);

const char *client_path(void);

/* Spawn the CLI with args (NULL-terminated) and pipes on stdin and stdout;
 * stderr is ours unless capture_err (then a pipe: p->err_fd); the
 * environment is ours changed by env (see env_with; NULL: unchanged). */
h_proc_t *cli_spawn_env(const char *const *args, bool capture_err,
                        const char *const *env);

h_proc_t *cli_spawn_(const char *const *args, bool capture_err);

h_proc_t *cli_spawn(const char *const *args);

/* The next stdout line (without '\n'), malloc'd. */
char *cli_line(h_proc_t *p);

#define cli_expect(p, want) (h_at(__FILE__, __LINE__), cli_expect_((p), (want), __LINE__))
void cli_expect_(h_proc_t *p, const char *want, int line);

/* Close stdin (EOF = quit) and await the exit; returns the exit status. */
int cli_finish(h_proc_t *p, bool close_stdin);

/* The next stdout line that does not start with skip (NULL: none) must be want. */
#define cli_expect_after(p, skip, want) \
    (h_at(__FILE__, __LINE__), cli_expect_after_((p), (skip), (want), __LINE__))

void cli_expect_after_(h_proc_t *p, const char *skip, const char *want, int line);

#define UNREACHABLE_EV "{\"event\":\"server_unreachable\","
/* Two development CAs made by certs/gen-certs.sh (A: server and client
 * certificates the server trusts; B: a client certificate it does not). */
struct certs {
    char a[64], b[64];
    char path[6][128];
};

extern struct certs *certs_made; /* removed by the teardown */

const char *cert_in(struct certs *k, int slot, const char *dir, const char *name);

void certs_make(struct certs *k);

void certs_cleanup(void);

/* All of a CLI's stderr until it closes (the CLI exited). */
char *cli_all_stderr(h_proc_t *p);


/* Spawn the CLI (client_path) with args and stdin, stdout and stderr on a
 * new pseudo-terminal; p->out_fd is the master (in_fd and err_fd are copies
 * of it). */
h_proc_t *cli_spawn_pty(const char *const *args);
/* Read the terminal until what it showed since offset `from` contains
 * needle; returns needle's offset in p->buf (nothing is consumed). */
#define pty_await(p, from, needle) (h_at(__FILE__, __LINE__), pty_await_((p), (from), (needle)))
size_t pty_await_(h_proc_t *p, size_t from, const char *needle);

#endif
