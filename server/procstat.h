/*
 * procstat: the process's own resource use, for the standard Prometheus
 * process_* metrics (resident and virtual memory, CPU time, open and
 * allowed file descriptors). Linux /proc and getrusage/getrlimit; read at
 * scrape time only, never on the request path.
 */
#ifndef PCSIG_PROCSTAT_H
#define PCSIG_PROCSTAT_H

#include <stdbool.h>
#include <stdint.h>

struct procstat {
    uint64_t resident_bytes; /* /proc/self/statm: resident pages x page size */
    uint64_t virtual_bytes;  /* /proc/self/statm: total program size */
    uint64_t cpu_us;         /* user + system CPU time of every thread */
    uint64_t open_fds;       /* entries of /proc/self/fd, the listing's own excluded */
    uint64_t max_fds;        /* RLIMIT_NOFILE soft limit */
};

/* Fill out; a field that cannot be read is left 0. Returns true when the
 * memory and CPU figures were read (false: say nothing rather than 0). */
bool procstat_read(struct procstat *out);

#endif
