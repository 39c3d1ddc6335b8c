/* turnpike/app.h: the app descriptor and tp_main(), the one-line main of every Turnpike binary. */
#ifndef TURNPIKE_APP_H
#define TURNPIKE_APP_H

#include <stddef.h>

#include "hooks.h"
#include "settings.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The kinds of context an app may extend with its own typed data. */
typedef enum tp_ext_kind {
    TP_EXT_ENDPOINT = 0,
    TP_EXT_INGRESS_CONNECTION,
    TP_EXT_REQUEST,
    TP_EXT_DNS_ITEM, /* a cached DNS answer (per worker and endpoint): tp_egress_dns_item_ext() */
    TP_EXT__COUNT
} tp_ext_kind_t;

/*
 * An extension: `size` bytes allocated zeroed with each context of its kind, `init` (optional) run
 * right after, `free` (optional) run before the context is freed. `owner` is the context.
 */
typedef struct tp_ext_spec {
    size_t size;
    void (*init)(void *ext, void *owner);
    void (*free)(void *ext);
} tp_ext_spec_t;

/* An extension of type T with no init/free. */
#define TP_EXT_SPEC(T)                                                                             \
    { .size = sizeof(T) }

typedef struct tp_app {
    const char *name; /* shown by --version and in logs */
    const char *version;
    const char *description; /* one line, printed at the top of --print-default-config */
    /* The app's own top-level `app:` section: schema entries for a struct of settings_size bytes.
     */
    const tp_setting_t *settings;
    size_t settings_size;
    /* The app's per-endpoint section (`endpoints[].app:`). */
    const tp_setting_t *endpoint_settings;
    size_t endpoint_settings_size;
    tp_ext_spec_t ext[TP_EXT__COUNT];
    tp_hooks_t hooks;
    /*
     * Optional, once after the configuration is loaded and before any worker starts: may check the
     * settings across keys and adjust `hooks` (a copy of .hooks, e.g. to set `self`). Returns 0, or
     * a negative tp_err_t after writing a message to stderr: Turnpike then exits with status 2.
     */
    int (*start)(const void *settings, tp_hooks_t *hooks);
    /* Optional, once after all workers stopped. */
    void (*stop)(void);
} tp_app_t;

/*
 * Runs Turnpike with the app: parses the command line (-c FILE, --check-config,
 * --print-default-config, --version, --help), loads the configuration, starts the workers and
 * serves until SIGTERM or SIGINT, then drains. Returns the process exit status: 0 after a clean
 * stop, 1 on a runtime failure (e.g. a listen address in use), 2 on a usage or configuration error.
 */
int tp_main(int argc, char **argv, const tp_app_t *app);

#ifdef __cplusplus
}
#endif
#endif
