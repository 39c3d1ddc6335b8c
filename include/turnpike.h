/* turnpike.h: the one header an app includes; it pulls in the whole public API. */
#ifndef TURNPIKE_H
#define TURNPIKE_H

#include "turnpike/common.h"
#include "turnpike/settings.h"
#include "turnpike/proxy_protocol.h"
#include "turnpike/tls.h"
#include "turnpike/hooks.h"
#include "turnpike/app.h"
#include "turnpike/quic.h"

#endif
