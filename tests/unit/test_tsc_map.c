/* Unit tests for transport/tsc_map.h, which turns the runtime's TSC
 * timestamps into BOOTTIME ns: times between two pairs are interpolated,
 * times outside the pairs follow the rate over all of them, a time converts the same
 * however many pairs come after it (while its piece is kept), conversion
 * keeps times in order, and pairs out of order are refused. */
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "transport/tsc_map.h"

int main(void) {
    struct tsc_map m = {0};
    CHECK_EQ_U(tsc_map_ns(&m, 1), 0); /* no pair: nothing to say */
    tsc_map_add(&m, 1000, 5000);
    tsc_map_add(&m, 2000, 5500); /* 0.5 ns per tick */
    CHECK_EQ_U(tsc_map_ns(&m, 1000), 5000);
    CHECK_EQ_U(tsc_map_ns(&m, 1500), 5250);
    CHECK_EQ_U(tsc_map_ns(&m, 2000), 5500);
    CHECK_EQ_U(tsc_map_ns(&m, 600), 4800);  /* before the first pair: the rate over all pairs */
    CHECK_EQ_U(tsc_map_ns(&m, 3000), 6000); /* after the last: the same */
    tsc_map_add(&m, 1500, 9000);            /* out of order: refused */
    tsc_map_add(&m, 3000, 5400);            /* ns going back: refused */
    CHECK_EQ_U(m.count, 2);
    tsc_map_add(&m, 4000, 7500);            /* 1 ns per tick from 2000 */
    CHECK_EQ_U(tsc_map_ns(&m, 1500), 5250); /* unchanged by the new pair */
    CHECK_EQ_U(tsc_map_ns(&m, 3000), 6500);

    /* A drifting rate, 200 pairs (more than are kept): times in order stay
     * in order, and every time between two kept pairs lands between them. */
    struct tsc_map d = {0};
    uint64_t tsc = 1u << 20, ns = 1000000;
    for (int i = 0; i < 200; i++) {
        tsc_map_add(&d, tsc, ns);
        tsc += 5000000 + (uint64_t)(i % 7) * 1000;
        ns += 2000000 + (uint64_t)(i % 5) * 37;
    }
    CHECK_EQ_U(d.count, TSC_MAP_PAIRS);
    uint64_t prev = 0;
    int ordered = 1, bracketed = 1;
    for (uint64_t t = 1u << 20; t < tsc; t += 99991) {
        uint64_t v = tsc_map_ns(&d, t);
        if (v < prev) ordered = 0;
        prev = v;
    }
    for (unsigned i = 1; i < d.count; i++) {
        const struct tsc_pair *a = &d.pairs[(d.first + i - 1) % TSC_MAP_PAIRS];
        const struct tsc_pair *b = &d.pairs[(d.first + i) % TSC_MAP_PAIRS];
        uint64_t v = tsc_map_ns(&d, a->tsc + (b->tsc - a->tsc) / 3);
        if (v < a->ns || v > b->ns) bracketed = 0;
    }
    CHECK(ordered);
    CHECK(bracketed);

    /* The real clock: pairs read a millisecond apart describe it. */
    struct tsc_map r;
    tsc_map_init(&r);
    if (tsc_map_usable()) {
        CHECK_EQ_U(r.count, 1);
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        tsc_map_mark(&r);
        CHECK_EQ_U(r.count, 2);
        const struct tsc_pair *a = &r.pairs[0], *b = &r.pairs[1];
        CHECK(b->ns - a->ns >= 1000000);
        CHECK(tsc_map_ns(&r, a->tsc + (b->tsc - a->tsc) / 2) > a->ns);
    }
    return check_done("test_tsc_map");
}
