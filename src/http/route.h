/* route.h: which of an http endpoint's routes a request takes. */
#ifndef TP_HTTP_ROUTE_H
#define TP_HTTP_ROUTE_H

#include "config/model.h"
#include "turnpike/common.h"

/* The index of the first route in `routes` (of tp_route_cfg_t) that matches the request, or -1.
 * `host` is without port or brackets; names compare case-insensitively, paths exactly. */
int tp__route_match(const tp_list_t *routes, tp_str_t method, tp_str_t host, tp_str_t path);

#endif
