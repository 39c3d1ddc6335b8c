/* tls-handshake-rate.c: TLS handshakes per second against a server, new or resumed (GnuTLS). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

/*
 * Usage: tls-handshake-rate --port P [--host 127.0.0.1] [--ca FILE] [--sni NAME] [--resume]
 *                           [--threads N] [--duration SECONDS] [--priority STRING]
 * Each thread connects, completes a handshake (resuming its last session with --resume; TLS 1.3
 * tickets arrive after the handshake, so one byte is read to collect them), closes with
 * close_notify, and starts again, for the duration. Prints one JSON line: handshakes per second,
 * how many were resumed, and failures.
 */

static const char *host = "127.0.0.1", *ca, *sni = "localhost", *priority;
static int port, nthreads = 1, duration = 5;
static int resume;
static atomic_ulong done_total, resumed_total, failed_total;
static atomic_int stop;
static gnutls_certificate_credentials_t cred;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_tcp(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One handshake; `sess` holds the session to resume and gets the new one. */
static int one(gnutls_datum_t *sess, int *was_resumed) {
    int fd = connect_tcp();
    if (fd < 0)
        return -1;
    gnutls_session_t s;
    gnutls_init(&s, GNUTLS_CLIENT);
    if (priority)
        gnutls_priority_set_direct(s, priority, NULL);
    else
        gnutls_set_default_priority(s);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni, strlen(sni));
    if (ca)
        gnutls_session_set_verify_cert(s, sni, 0);
    if (resume && sess->data)
        gnutls_session_set_data(s, sess->data, sess->size);
    gnutls_transport_set_int(s, fd);
    int rc;
    do
        rc = gnutls_handshake(s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc == 0) {
        *was_resumed = gnutls_session_is_resumed(s);
        if (resume) {
            /* TLS 1.3: the ticket comes after the handshake; a short read collects it. */
            gnutls_record_set_timeout(s, 50);
            char b[1];
            (void)gnutls_record_recv(s, b, sizeof(b));
            gnutls_free(sess->data);
            sess->data = NULL;
            gnutls_session_get_data2(s, sess);
        }
        gnutls_bye(s, GNUTLS_SHUT_WR);
    }
    gnutls_deinit(s);
    close(fd);
    return rc == 0 ? 0 : -1;
}

static void *worker(void *arg) {
    gnutls_datum_t sess = {NULL, 0};
    while (!atomic_load(&stop)) {
        int r = 0;
        if (one(&sess, &r) == 0) {
            atomic_fetch_add(&done_total, 1);
            if (r)
                atomic_fetch_add(&resumed_total, 1);
        } else {
            atomic_fetch_add(&failed_total, 1);
        }
    }
    gnutls_free(sess.data);
    return NULL;
}

/* A positive decimal number, or -1. */
static int number(const char *v) {
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n > 0 && n < 1000000 ? (int)n : -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--resume")) {
            resume = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "tls-handshake-rate: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--port"))
            port = number(v);
        else if (!strcmp(a, "--host"))
            host = v;
        else if (!strcmp(a, "--ca"))
            ca = v;
        else if (!strcmp(a, "--sni"))
            sni = v;
        else if (!strcmp(a, "--threads"))
            nthreads = number(v);
        else if (!strcmp(a, "--duration"))
            duration = number(v);
        else if (!strcmp(a, "--priority"))
            priority = v;
        else {
            fprintf(stderr, "tls-handshake-rate: unknown option %s\n", a);
            return 2;
        }
    }
    if (port <= 0 || nthreads <= 0 || nthreads > 256 || duration <= 0) {
        fprintf(stderr, "usage: tls-handshake-rate --port P [--host H] [--ca FILE] [--sni NAME] "
                        "[--resume] [--threads N] [--duration S] [--priority P]\n");
        return 2;
    }
    gnutls_certificate_allocate_credentials(&cred);
    if (ca && gnutls_certificate_set_x509_trust_file(cred, ca, GNUTLS_X509_FMT_PEM) <= 0) {
        fprintf(stderr, "tls-handshake-rate: cannot load %s\n", ca);
        return 2;
    }
    pthread_t th[256];
    double t0 = now();
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    struct timespec d = {.tv_sec = duration};
    nanosleep(&d, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double el = now() - t0;
    printf("{\"handshakes_per_s\":%.1f,\"handshakes\":%lu,\"resumed\":%lu,\"failed\":%lu,"
           "\"seconds\":%.2f}\n",
           (double)atomic_load(&done_total) / el, atomic_load(&done_total),
           atomic_load(&resumed_total), atomic_load(&failed_total), el);
    gnutls_certificate_free_credentials(cred);
    return atomic_load(&done_total) ? 0 : 1;
}
