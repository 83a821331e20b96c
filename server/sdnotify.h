/*
 * sdnotify: tell the service manager how the server is doing, the
 * sd_notify(3) protocol without libsystemd.
 *
 * Under systemd with Type=notify, $NOTIFY_SOCKET names an AF_UNIX datagram
 * socket: a path, or "@name" for the abstract namespace. Each state change is
 * one datagram of newline-separated VAR=value assignments:
 *   READY=1       once the listeners accept (start-up is over)
 *   RELOADING=1   before a SIGHUP reload, then READY=1 after it
 *   STOPPING=1    when draining starts
 * Without $NOTIFY_SOCKET nothing is sent. Failures are logged at warn level
 * and returned; the caller carries on (never fatal: the service manager only
 * misses a state change). No state; thread-safe as long as nobody changes
 * the environment meanwhile.
 */
#ifndef PCSIG_SDNOTIFY_H
#define PCSIG_SDNOTIFY_H

/* Send state ("READY=1", ...) to $NOTIFY_SOCKET. Returns 0 when sent or when
 * $NOTIFY_SOCKET is unset or empty; -EAFNOSUPPORT when it is neither an
 * absolute path nor "@name", -ENAMETOOLONG, or the -errno of socket/sendto. */
int sdnotify_send(const char *state);

/* "RELOADING=1" with MONOTONIC_USEC= (the reload's start on CLOCK_MONOTONIC,
 * which Type=notify-reload requires). Returns as sdnotify_send. */
int sdnotify_reloading(void);

#endif
