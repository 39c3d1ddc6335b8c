/* main.c: the turnpike binary: the framework with no app logic (every hook at its default). */
#include <turnpike.h>

static const tp_app_t app = {
    .name = "turnpike",
    .version = TP_VERSION_STRING,
    .description = "a programmable proxy: HTTP/1.1 forward proxy with CONNECT, and L4 TCP",
};

int main(int argc, char **argv) { return tp_main(argc, argv, &app); }
