/* route.c: which of an http endpoint's routes a request takes (first match wins). */
#include "http/route.h"

#include <string.h>
#include <strings.h>

static bool host_matches(const char *pattern, tp_str_t host) {
    if (host.len && host.ptr[host.len - 1] == '.') /* "example.com." is "example.com" */
        host.len--;
    if (pattern[0] == '*') { /* "*.example.com": any name under it, not the name itself */
        size_t sl = strlen(pattern + 1);
        return host.len > sl && strncasecmp(host.ptr + host.len - sl, pattern + 1, sl) == 0;
    }
    return strlen(pattern) == host.len && strncasecmp(pattern, host.ptr, host.len) == 0;
}

static bool route_matches(const tp_route_cfg_t *r, tp_str_t method, tp_str_t host, tp_str_t path) {
    if (r->host && !host_matches(r->host, host))
        return false;
    if (r->path_prefix) {
        size_t pl = strlen(r->path_prefix);
        if (path.len < pl || memcmp(path.ptr, r->path_prefix, pl) != 0)
            return false;
    }
    if (r->methods.n == 0)
        return true;
    for (size_t i = 0; i < r->methods.n; i++)
        if (strlen(r->methods.items[i]) == method.len &&
            memcmp(r->methods.items[i], method.ptr, method.len) == 0)
            return true;
    return false;
}

int tp__route_match(const tp_list_t *routes, tp_str_t method, tp_str_t host, tp_str_t path) {
    for (size_t i = 0; i < routes->n; i++)
        if (route_matches(TP_LIST_AT(tp_route_cfg_t, *routes, i), method, host, path))
            return (int)i;
    return -1;
}
