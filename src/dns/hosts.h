/* hosts.h: the hosts file (/etc/hosts) as a sorted table of names to addresses. */
#ifndef TP_DNS_HOSTS_H
#define TP_DNS_HOSTS_H

#include <stddef.h>

#include "turnpike/common.h"

typedef struct tp_hosts tp_hosts_t;

/*
 * Reads a hosts file ("address name [aliases...]" per line, '#' comments). A missing file gives
 * an empty table. Returns 0, TP_ERR_IO (unreadable) or TP_ERR_NOMEM.
 */
int tp__hosts_load(const char *path, tp_hosts_t **out);

/* Copies up to `max` addresses of `name` (lower case, no trailing dot) into out, IPv6 first then
 * IPv4, each in file order; returns how many. */
size_t tp__hosts_find(const tp_hosts_t *h, const char *name, tp_addr_t *out, size_t max);

/* The file's modification time when it was read (0: it did not exist). */
int64_t tp__hosts_mtime_ns(const tp_hosts_t *h);

void tp__hosts_del(tp_hosts_t *h);

#endif
