/* Unit tests for the shared-memory ring (include/astrace/ring.h): records
 * come out in order and intact across many wrap-arounds, a full ring drops
 * and counts instead of overwriting, and malformed contents are refused. */
#include <stdlib.h>
#include <string.h>

#include "astrace/ring.h"
#include "check.h"

struct collected {
    uint64_t next_seq;
    uint64_t count;
    int bad;
};

static void collect(void *ctx, const struct astrace_rec_hdr *rec) {
    struct collected *c = ctx;
    const struct astrace_rec_arg *r = (const struct astrace_rec_arg *)rec;
    if (rec->type != ASTRACE_REC_CALLBACK_BEGIN || (uint64_t)r->a0 != c->next_seq || rec->ts != c->next_seq * 3)
        c->bad++;
    /* variable-size records: the payload after a0 repeats the sequence byte */
    for (size_t i = sizeof *r; i < rec->size; i++)
        if (((const uint8_t *)rec)[i] != (uint8_t)c->next_seq) c->bad++;
    c->next_seq++;
    c->count++;
}

static struct astrace_ring make_ring(uint64_t size) {
    struct astrace_ring r;
    r.hdr = calloc(1, sizeof *r.hdr);
    r.data = calloc(1, size);
    r.size = size;
    return r;
}

static int put(struct astrace_ring *r, uint64_t seq, uint32_t len) {
    uint64_t next;
    struct astrace_rec_arg *rec = astrace_ring_reserve(r, len, &next);
    if (!rec) return 0;
    rec->h.type = ASTRACE_REC_CALLBACK_BEGIN;
    rec->h.size = (uint16_t)len;
    rec->h.str0 = 0;
    rec->h.ts = seq * 3;
    rec->a0 = (int64_t)seq;
    memset((uint8_t *)rec + sizeof *rec, (uint8_t)seq, len - sizeof *rec);
    astrace_ring_commit(r, next);
    return 1;
}

static void test_wraparound_in_order(void) {
    struct astrace_ring r = make_ring(4096);
    struct collected c = {0};
    uint64_t seq = 0;
    /* Sizes vary so records land at every offset and pads are exercised. */
    for (int round = 0; round < 5000; round++) {
        int burst = 1 + round % 7;
        for (int i = 0; i < burst; i++) {
            uint32_t len = 24 + 8 * (uint32_t)((seq * 7) % 20);
            CHECK(put(&r, seq, len));
            seq++;
        }
        astrace_ring_drain(&r, collect, &c, 1 << 30);
    }
    CHECK_EQ_U(c.count, seq);
    CHECK_EQ_U(c.bad, 0);
    CHECK_EQ_U(atomic_load(&r.hdr->dropped_records), 0);
    CHECK(atomic_load(&r.hdr->head) > 4096 * 100); /* it really wrapped, many times */
    free(r.hdr);
    free(r.data);
}

static void test_full_ring_drops_and_counts(void) {
    struct astrace_ring r = make_ring(4096);
    uint64_t written = 0, refused = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        if (put(&r, written, 24))
            written++;
        else
            refused++;
    }
    CHECK_EQ_U(written, 4096 / 24);
    CHECK_EQ_U(refused, 1000 - written);
    CHECK_EQ_U(atomic_load(&r.hdr->dropped_records), refused);
    /* Everything that was accepted comes out intact; nothing was overwritten. */
    struct collected c = {0};
    CHECK_EQ_U(astrace_ring_drain(&r, collect, &c, 1 << 30), written);
    CHECK_EQ_U(c.bad, 0);
    /* After draining there is room again. */
    CHECK(put(&r, written, 24));
    free(r.hdr);
    free(r.data);
}

static void test_drain_limit_and_resume(void) {
    struct astrace_ring r = make_ring(8192);
    for (uint64_t i = 0; i < 100; i++) CHECK(put(&r, i, 32));
    struct collected c = {0};
    CHECK_EQ_U(astrace_ring_drain(&r, collect, &c, 30), 30);
    CHECK_EQ_U(astrace_ring_drain(&r, collect, &c, 1000), 70);
    CHECK_EQ_U(c.bad, 0);
    free(r.hdr);
    free(r.data);
}

static void test_malformed_is_refused(void) {
    struct astrace_ring r = make_ring(4096);
    CHECK(put(&r, 0, 24));
    /* Corrupt: a record claiming 12 bytes (not a multiple of 8). */
    uint64_t next;
    struct astrace_rec_hdr *h = astrace_ring_reserve(&r, 24, &next);
    h->type = ASTRACE_REC_CALLBACK_END;
    h->size = 12;
    astrace_ring_commit(&r, next);
    struct collected c = {0};
    CHECK(astrace_ring_drain(&r, collect, &c, 1 << 30) == -1);
    CHECK_EQ_U(c.count, 1); /* the good record before it was delivered */
    /* A head that runs more than a ring ahead of the tail is refused too. */
    atomic_store(&r.hdr->head, atomic_load(&r.hdr->tail) + 2 * 4096);
    CHECK(astrace_ring_drain(&r, collect, &c, 1 << 30) == -1);
    free(r.hdr);
    free(r.data);
}

int main(void) {
    test_wraparound_in_order();
    test_full_ring_drops_and_counts();
    test_drain_limit_and_resume();
    test_malformed_is_refused();
    return check_done("test_ring");
}
