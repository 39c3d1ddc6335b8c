/* main.c: tp_main(): the command line, configuration loading, app start-up and the server run. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "runtime/core.h"
#include "runtime/log.h"

static void usage(FILE *f, const char *prog) {
    fprintf(f,
            "usage: %s [-c FILE] [--check-config] [--print-default-config] [--version]\n"
            "  -c, --config FILE        run with this configuration (default: the built-in one,\n"
            "                           which --print-default-config shows)\n"
            "  --check-config           validate the configuration and exit (0 valid, 2 invalid)\n"
            "  --print-default-config   print the complete, commented default configuration\n"
            "  --version                print the version\n",
            prog);
}

/* The built-in configuration is the documented default, so the two can never disagree. */
static int load_builtin(tp_server_t *srv, tp_config_error_t *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m)
        return TP_ERR_NOMEM;
    tp__config_print_default(m, &srv->schemas.root, NULL);
    fclose(m);
    int rc = tp__config_load(&srv->schemas.root, &srv->cfg, "<built-in default>", text, len, err);
    free(text);
    return rc;
}

int tp_main(int argc, char **argv, const tp_app_t *app) {
    enum { OPT_CHECK = 256, OPT_PRINT, OPT_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"print-default-config", no_argument, NULL, OPT_PRINT},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    bool check = false, print = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case OPT_CHECK: check = true; break;
        case OPT_PRINT: print = true; break;
        case OPT_VERSION:
            if (strcmp(app->name, "turnpike") == 0)
                printf("turnpike %s\n", TP_VERSION_STRING);
            else
                printf("%s %s (turnpike %s)\n", app->name, app->version ? app->version : "",
                       TP_VERSION_STRING);
            return 0;
        case 'h': usage(stdout, argv[0]); return 0;
        default: usage(stderr, argv[0]); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
        usage(stderr, argv[0]);
        return 2;
    }

    tp_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return 1;
    srv->app = app;
    srv->hooks = app->hooks;
    tp__config_schemas_init(&srv->schemas, app->settings, app->settings_size,
                            app->endpoint_settings, app->endpoint_settings_size);
    if (print) {
        char header[512];
        snprintf(header, sizeof(header),
                 "%s %s: %s\nThe complete configuration with every key at its default.\n"
                 "Check a file with: %s --check-config -c FILE",
                 app->name, app->version ? app->version : "",
                 app->description ? app->description : "a Turnpike app", app->name);
        int rc = tp__config_print_default(stdout, &srv->schemas.root, header);
        free(srv);
        return rc == 0 ? 0 : 1;
    }

    tp_config_error_t err;
    int rc = config_path ? tp__config_load_file(&srv->schemas.root, &srv->cfg, config_path, &err)
                         : load_builtin(srv, &err);
    if (rc != 0) {
        char msg[1200];
        tp__config_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "%s: invalid configuration: %s\n", app->name, msg);
        free(srv);
        return 2;
    }
    if (check) {
        printf("%s: configuration is valid\n", config_path ? config_path : "<built-in default>");
        tp__config_free(&srv->schemas.root, &srv->cfg);
        free(srv);
        return 0;
    }
    if (srv->cfg.endpoints.n == 0) {
        fprintf(stderr, "%s: the configuration has no endpoints: nothing to serve\n", app->name);
        tp__config_free(&srv->schemas.root, &srv->cfg);
        free(srv);
        return 2;
    }
    tp__log_set_level((tp_log_level_t)srv->cfg.runtime.log_level);
    signal(SIGPIPE, SIG_IGN);
    if (app->start && app->start(srv->cfg.app, &srv->hooks) != 0) {
        fprintf(stderr, "%s: the app refused to start\n", app->name);
        tp__config_free(&srv->schemas.root, &srv->cfg);
        free(srv);
        return 2;
    }
    int status = tp__worker_run_all(srv);
    if (app->stop)
        app->stop();
    tp__config_free(&srv->schemas.root, &srv->cfg);
    free(srv);
    return status;
}
