/* blocks.h: an endpoint's cache of send-buffer blocks, shared by its QUIC streams (stream.c) and
 * the HTTP/3 body queues of its connections (h3/bodyq.c). */
#ifndef TP_QUIC_BLOCKS_H
#define TP_QUIC_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tp_quic_conn tp_quic_conn_t;

/*
 * Blocks of TP_QUIC_BLOCK_HDR + (1 KiB << k) bytes for k = 0..4 (1 to 16 KiB of data after a
 * header of the user's), at most TP_QUIC_BLOCK_KEEP(k) kept per class. A request/response stream
 * takes a 1-2 KiB block and gives it back: from malloc, each was a large-bin request, and with
 * nghttp3's small frees about, glibc consolidated its fast bins for many of them (malloc and
 * free were 17% of an HTTP/3 server's profile). Only the endpoint's thread touches it.
 */
#define TP_QUIC_BLOCK_CLASSES 5
/* Kept per class: 512 KiB of each (512 of 1 KiB ... 32 of 16 KiB). A server with 32 x 16
 * requests in flight frees and takes hundreds of one class at a time; with 32 kept, most of a
 * burst went back to malloc. */
#define TP_QUIC_BLOCK_KEEP(k) (512u >> (k))
#define TP_QUIC_BLOCK_HDR     32

/*
 * Small objects of 32 << k bytes for k = 0..5 (32 B to 1 KiB), at most TP_QUIC_SMALL_KEEP(k) kept
 * per class: the HTTP/3 driver's allocator for nghttp3 (h3/conn.c). nghttp3 makes about eight
 * small allocations per request; a loaded server takes in a batch of requests before the
 * responses free them, more of one size than glibc's per-thread cache holds, and most of them
 * then went through _int_malloc (about 2 000 instructions per request).
 */
#define TP_QUIC_SMALL_CLASSES 6
#define TP_QUIC_SMALL_MIN     32
/* Kept per class: 1024 of 32 to 256 bytes, then 512, 256 (under 1 MiB in all). */
#define TP_QUIC_SMALL_KEEP(k) ((k) <= 3 ? 1024u : 1024u >> ((k)-3))

typedef struct tp_quic_blocks {
    void *free[TP_QUIC_BLOCK_CLASSES];
    unsigned n[TP_QUIC_BLOCK_CLASSES];
    void *small[TP_QUIC_SMALL_CLASSES];
    unsigned nsmall[TP_QUIC_SMALL_CLASSES];
} tp_quic_blocks_t;

/* The smallest small class that holds `size` bytes, or -1 (larger than 1 KiB). */
int tp__quic_small_class(size_t size);
/* An object of class k (32 << k bytes, 16-byte aligned), kept or new; NULL: no memory. */
void *tp__quic_small_get(tp_quic_blocks_t *cc, int k);
/* Gives an object of class k back (kept, or freed when the class is full). */
void tp__quic_small_put(tp_quic_blocks_t *cc, int k, void *p);

/* The class whose data size is exactly `cap` (a power of two, 1 to 16 KiB), or -1. */
int tp__quic_block_class(size_t cap);
/* A block of class k (TP_QUIC_BLOCK_HDR + (1024 << k) bytes), kept or new; NULL: no memory.
 * `cc` may be NULL (then it is malloc and free). */
void *tp__quic_block_get(tp_quic_blocks_t *cc, int k);
/* Gives a block of class k back (kept, or freed when the class is full or k is -1). */
void tp__quic_block_put(tp_quic_blocks_t *cc, int k, void *p);
/*
 * malloc, free, calloc and realloc over the small classes (larger sizes go to malloc), with the
 * signatures of ngtcp2_mem and nghttp3_mem; user_data is the tp_quic_blocks_t. Every object has
 * a 16-byte header (its class and size), so what the library gets stays 16-byte aligned.
 * Under ASan the cache poisons what it keeps and what lies past the size asked for, so that a
 * use after free or an overflow is still reported.
 */
#define TP_QUIC_MEM_CACHE true
void *tp__quic_mem_malloc(size_t size, void *ud);
void tp__quic_mem_free(void *ptr, void *ud);
void *tp__quic_mem_calloc(size_t nmemb, size_t size, void *ud);
void *tp__quic_mem_realloc(void *ptr, size_t size, void *ud);

/* Frees every kept block (when the endpoint goes). */
void tp__quic_blocks_clear(tp_quic_blocks_t *cc);
/* The blocks of a connection's endpoint. */
tp_quic_blocks_t *tp__quic_conn_blocks(tp_quic_conn_t *c);
/* The blocks of an endpoint (a client's HTTP/3 state exists before its QUIC connection). */
struct tp_quic_endpoint;
tp_quic_blocks_t *tp__quic_endpoint_blocks(struct tp_quic_endpoint *ep);

#endif
