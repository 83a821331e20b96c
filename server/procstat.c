/* procstat: the process's resource use for the process_* metrics. */
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "proto.h"

/* One decimal number at *p, ended by a space, a newline or the end. */
static int statm_number(const char **p, uint64_t *out)
{
    const char *start = *p, *q = start;
    while (*q >= '0' && *q <= '9')
        q++;
    if (q == start || (*q != ' ' && *q != '\n' && *q != '\0'))
        return -EINVAL;
    if (proto_parse_u64(start, (size_t)(q - start), out) < 0)
        return -EINVAL;
    *p = *q == ' ' ? q + 1 : q;
    return 0;
}

/* The resident and virtual sizes from the text of /proc/self/statm
 * ("size resident shared ..."), in pages times page_size. Pure: 0, or
 * -EINVAL when the text is not two decimal numbers then a space or end. */
static int procstat_parse_statm(const char *text, uint64_t page_size, uint64_t *virtual_bytes,
                                uint64_t *resident_bytes)
{
    uint64_t size_pages, resident_pages;
    const char *p = text;
    if (statm_number(&p, &size_pages) < 0 || statm_number(&p, &resident_pages) < 0)
        return -EINVAL;
    if (page_size && (size_pages > UINT64_MAX / page_size || resident_pages > UINT64_MAX / page_size))
        return -EINVAL;
    *virtual_bytes = size_pages * page_size;
    *resident_bytes = resident_pages * page_size;
    return 0;
}

static bool read_statm(struct procstat *out)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char text[256];
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    long page = sysconf(_SC_PAGESIZE);
    return procstat_parse_statm(text, page > 0 ? (uint64_t)page : 4096, &out->virtual_bytes,
                                &out->resident_bytes) == 0;
}

/* Entries of /proc/self/fd but "." and "..", less the directory's own fd. */
static uint64_t count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

bool procstat_read(struct procstat *out)
{
    memset(out, 0, sizeof *out);
    bool ok = read_statm(out);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        out->cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                      (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    else
        ok = false;
    out->open_fds = count_open_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        out->max_fds = (uint64_t)rl.rlim_cur;
    return ok;
}
