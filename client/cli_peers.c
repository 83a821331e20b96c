/*
 * cli_peers: the peers the CLI knows, sorted by id (binary search: a
 * sign-in list of 100,000 peers costs O(n log n), never n inserts), with
 * an explicit capacity; at most max are kept (the library has warned).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

void cli_peers_clear(struct cli_peers *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->v[i].name);
    free(ps->v);
    ps->v = NULL;
    ps->n = ps->cap = 0;
}

/* The index of id in the sorted list, or where it would go (*found false). */
static size_t peers_find(const struct cli_peers *ps, uint64_t id, bool *found)
{
    size_t lo = 0, hi = ps->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ps->v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < ps->n && ps->v[lo].id == id;
    return lo;
}

void cli_peers_remove(struct cli_peers *ps, uint64_t id)
{
    bool found;
    size_t i = peers_find(ps, id, &found);
    if (!found)
        return;
    free(ps->v[i].name);
    memmove(&ps->v[i], &ps->v[i + 1], (ps->n - i - 1) * sizeof ps->v[0]);
    ps->n--;
}

void cli_peers_add(struct cli_peers *ps, uint64_t id, const char *name)
{
    char *copy = strdup(name ? name : "");
    if (!copy)
        return;
    bool found;
    size_t at = peers_find(ps, id, &found);
    if (found) {
        free(ps->v[at].name);
        ps->v[at].name = copy;
        return;
    }
    if (ps->n >= ps->max) {
        free(copy);
        return;
    }
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        struct cli_peer *v = realloc(ps->v, cap * sizeof *v);
        if (!v) {
            free(copy);
            return;
        }
        ps->v = v;
        ps->cap = cap;
    }
    memmove(&ps->v[at + 1], &ps->v[at], (ps->n - at) * sizeof ps->v[0]);
    ps->v[at] = (struct cli_peer){.id = id, .name = copy};
    ps->n++;
}

static int peer_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct cli_peer *)a)->id, y = ((const struct cli_peer *)b)->id;
    return x < y ? -1 : x > y;
}

void cli_peers_set_all(struct cli_peers *ps, const struct pcsig_peer *p, size_t n)
{
    cli_peers_clear(ps);
    if (n > ps->max)
        n = ps->max;
    if (n == 0)
        return;
    struct cli_peer *v = calloc(n, sizeof *v);
    if (!v)
        return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char *copy = strdup(p[i].name ? p[i].name : "");
        if (copy)
            v[k++] = (struct cli_peer){.id = p[i].id, .name = copy};
    }
    qsort(v, k, sizeof *v, peer_cmp);
    size_t out = 0;
    for (size_t i = 0; i < k; i++) {
        if (out && v[out - 1].id == v[i].id) {
            free(v[out - 1].name); /* the later entry wins, as with cli_peers_add */
            v[out - 1] = v[i];
        } else {
            v[out++] = v[i];
        }
    }
    if (out == 0) {
        free(v);
        return;
    }
    ps->v = v;
    ps->n = out;
    ps->cap = n;
}

const char *cli_peers_name(const struct cli_peers *ps, uint64_t id, uint64_t own_id)
{
    bool found;
    size_t i = peers_find(ps, id, &found);
    if (found)
        return ps->v[i].name;
    return id == own_id && id ? "me" : "?";
}
