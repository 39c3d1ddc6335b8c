/* errors.c: tp_strerror(), the human-readable text of each tp_err_t code. */
#include "turnpike/common.h"

const char *tp_strerror(int err) {
    switch ((tp_err_t)err) {
    case TP_OK: return "success";
    case TP_ERR_NOMEM: return "out of memory";
    case TP_ERR_INVAL: return "invalid argument or value";
    case TP_ERR_RANGE: return "value out of range";
    case TP_ERR_NOTFOUND: return "not found";
    case TP_ERR_IO: return "input/output error";
    case TP_ERR_ADDRINUSE: return "address already in use";
    case TP_ERR_REFUSED: return "connection refused";
    case TP_ERR_TIMEOUT: return "timed out";
    case TP_ERR_CLOSED: return "flow closed";
    case TP_ERR_PROTOCOL: return "protocol error";
    case TP_ERR_DNS: return "name resolution failed";
    case TP_ERR_PROHIBITED: return "prohibited by policy";
    case TP_ERR_TOO_LARGE: return "limit exceeded";
    case TP_ERR_STATE: return "invalid in the current state";
    case TP_ERR_UNREACHABLE: return "destination unreachable";
    case TP_ERR_CONFIG: return "invalid configuration";
    }
    return "unknown error";
}
