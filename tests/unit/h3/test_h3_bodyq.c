/* test_h3_bodyq.c: unit tests of the H3 driver's outgoing body queue: its bound, lending bytes
 * to nghttp3 in order without moving them, and releasing them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h3/h3_int.h"

static uint8_t pat(size_t i) { return (uint8_t)(i % 251); }

static void fill(uint8_t *b, size_t off, size_t n) {
    for (size_t i = 0; i < n; i++) {
        b[i] = pat(off + i);
    }
}

static void test_bound(void **state) {
    tp_h3_bodyq_t q;
    tp__h3_bodyq_init(&q, 50000, NULL);
    uint8_t *b = malloc(80000);
    fill(b, 0, 80000);
    assert_int_equal(tp__h3_bodyq_push(&q, b, 80000), 50000);
    assert_int_equal(tp__h3_bodyq_room(&q), 0);
    assert_int_equal(tp__h3_bodyq_push(&q, b, 10), 0);
    assert_int_equal(tp__h3_bodyq_unlent(&q), 50000);
    tp__h3_bodyq_free(&q);
    free(b);
}

/* Pushes, lends and releases in uneven steps; every lent byte must be the next in order and
 * stay valid until released. */
static void test_order(void **state) {
    tp_h3_bodyq_t q;
    tp__h3_bodyq_init(&q, 100000, NULL);
    const size_t total = 1000000;
    uint8_t *src = malloc(total);
    fill(src, 0, total);
    size_t pushed = 0, checked = 0, released = 0;
    nghttp3_vec held[64];
    size_t nheld = 0;
    unsigned step = 0;
    while (released < total) {
        size_t want = 7000 + (step * 7919) % 30000;
        if (pushed < total) {
            if (want > total - pushed) {
                want = total - pushed;
            }
            ssize_t n = tp__h3_bodyq_push(&q, src + pushed, want);
            assert_true(n >= 0);
            pushed += (size_t)n;
        }
        nghttp3_vec vec[4];
        size_t step_start = checked; /* stream offset of this step's first lent byte */
        size_t cnt = tp__h3_bodyq_lend(&q, vec, 4);
        for (size_t i = 0; i < cnt; i++) {
            for (size_t k = 0; k < vec[i].len; k++) {
                assert_int_equal(vec[i].base[k], pat(checked + k));
            }
            checked += vec[i].len;
            if (nheld < 64) {
                held[nheld++] = vec[i];
            }
        }
        /* Release part of what is lent; what stays lent must be unchanged. */
        size_t lent = q.lent;
        size_t rel = step % 3 == 0 ? lent : lent / 2;
        tp__h3_bodyq_release(&q, rel);
        released += rel;
        size_t keep_from = released;
        size_t off = step_start;
        for (size_t i = 0; i < nheld; i++) {
            for (size_t k = 0; k < held[i].len; k++) {
                if (off + k >= keep_from) {
                    assert_int_equal(held[i].base[k], pat(off + k));
                }
            }
            off += held[i].len;
        }
        nheld = 0;
        step++;
        assert_true(step < 100000);
    }
    assert_int_equal(checked, total);
    assert_int_equal(q.held, 0);
    assert_int_equal(q.lent, 0);
    tp__h3_bodyq_free(&q);
    free(src);
}

static void test_release_clamps(void **state) {
    tp_h3_bodyq_t q;
    tp__h3_bodyq_init(&q, 1000, NULL);
    uint8_t b[100];
    fill(b, 0, sizeof(b));
    assert_int_equal(tp__h3_bodyq_push(&q, b, 100), 100);
    nghttp3_vec v[2];
    assert_int_equal(tp__h3_bodyq_lend(&q, v, 2), 1);
    assert_int_equal(v[0].len, 100);
    /* Nothing more to lend. */
    assert_int_equal(tp__h3_bodyq_lend(&q, v, 2), 0);
    tp__h3_bodyq_release(&q, 5000);
    assert_int_equal(q.held, 0);
    assert_int_equal(tp__h3_bodyq_room(&q), 1000);
    /* The queue is reusable after it emptied. */
    assert_int_equal(tp__h3_bodyq_push(&q, b + 10, 20), 20);
    assert_int_equal(tp__h3_bodyq_lend(&q, v, 2), 1);
    assert_int_equal(v[0].base[0], pat(10));
    tp__h3_bodyq_free(&q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_release_clamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
