/* hosts.c: reads the hosts file into a table sorted by name, for the resolver's first look. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dns/hosts.h"

typedef struct host_entry {
    const char *name; /* points into the file's text */
    size_t order;     /* position in the file, so equal names keep it */
    tp_addr_t addr;
} host_entry_t;

struct tp_hosts {
    char *text;
    host_entry_t *entries;
    size_t n;
    int64_t mtime_ns;
};

static int cmp_entry(const void *a, const void *b) {
    const host_entry_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static bool parse_ip(const char *s, tp_addr_t *a) {
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, s, &a->u.in.sin_addr) == 1) {
        a->u.in.sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &a->u.in6.sin6_addr) == 1) {
        a->u.in6.sin6_family = AF_INET6;
        return true;
    }
    return false; /* scoped (fe80::1%eth0) and odd lines are skipped, like most resolvers do */
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int tp__hosts_load(const char *path, tp_hosts_t **out) {
    *out = NULL;
    tp_hosts_t *h = calloc(1, sizeof(*h));
    if (!h)
        return TP_ERR_NOMEM;
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) {
            *out = h;
            return 0;
        }
        free(h);
        return TP_ERR_IO;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0)
        h->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    size_t len = 0;
    h->text = read_all(f, &len);
    fclose(f);
    if (!h->text) {
        int err = errno == ENOMEM ? TP_ERR_NOMEM : TP_ERR_IO;
        free(h);
        return err;
    }
    size_t cap = 0;
    char *save_line = NULL;
    for (char *line = strtok_r(h->text, "\n", &save_line); line;
         line = strtok_r(NULL, "\n", &save_line)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save_tok = NULL;
        char *ip = strtok_r(line, " \t\r", &save_tok);
        tp_addr_t addr;
        if (!ip || !parse_ip(ip, &addr))
            continue;
        for (char *name = strtok_r(NULL, " \t\r", &save_tok); name;
             name = strtok_r(NULL, " \t\r", &save_tok)) {
            size_t nl = strlen(name);
            if (nl > 1 && name[nl - 1] == '.')
                name[nl - 1] = '\0';
            for (char *p = name; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
            if (h->n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                host_entry_t *ne = realloc(h->entries, ncap * sizeof(*ne));
                if (!ne) {
                    tp__hosts_del(h);
                    return TP_ERR_NOMEM;
                }
                h->entries = ne;
                cap = ncap;
            }
            h->entries[h->n] = (host_entry_t){.name = name, .order = h->n, .addr = addr};
            h->n++;
        }
    }
    if (h->n)
        qsort(h->entries, h->n, sizeof(*h->entries), cmp_entry);
    *out = h;
    return 0;
}

size_t tp__hosts_find(const tp_hosts_t *h, const char *name, tp_addr_t *out, size_t max) {
    if (!h || h->n == 0)
        return 0;
    size_t lo = 0, hi = h->n; /* the first entry not below name */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(h->entries[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) { /* IPv6 first, like the resolver's answers */
        int fam = pass == 0 ? AF_INET6 : AF_INET;
        for (size_t i = lo; i < h->n && n < max && strcmp(h->entries[i].name, name) == 0; i++)
            if (h->entries[i].addr.u.sa.sa_family == fam) {
                bool dup = false;
                for (size_t j = 0; j < n && !dup; j++)
                    dup = tp_addr_eq(&out[j], &h->entries[i].addr);
                if (!dup)
                    out[n++] = h->entries[i].addr;
            }
    }
    return n;
}

int64_t tp__hosts_mtime_ns(const tp_hosts_t *h) { return h ? h->mtime_ns : 0; }

void tp__hosts_del(tp_hosts_t *h) {
    if (!h)
        return;
    free(h->entries);
    free(h->text);
    free(h);
}
