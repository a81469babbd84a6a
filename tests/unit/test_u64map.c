/* Unit tests for common/u64map.h, the one u64 -> pointer map of the recorder
 * and the reader: any key (0 included) is stored, a NULL value stores
 * nothing, entries survive growth, a put replaces, and free visits each
 * value once. */
#include <stdint.h>

#include "check.h"
#include "common/u64map.h"

static int freed;
static void count_free(void *v) {
    (void)v;
    freed++;
}

int main(void) {
    struct u64map m = {0};
    CHECK(u64map_get(&m, 0) == NULL);
    u64map_put(&m, 0, (void *)(uintptr_t)1); /* the reader's sequence id 0 */
    CHECK(u64map_get(&m, 0) == (void *)(uintptr_t)1);
    u64map_put(&m, 7, NULL);
    CHECK(u64map_get(&m, 7) == NULL);
    CHECK_EQ_U(m.used, 1);
    for (uint64_t k = 1; k <= 5000; k++) u64map_put(&m, k * 0x10000, (void *)(uintptr_t)(k + 1));
    int all = 1;
    for (uint64_t k = 1; k <= 5000; k++)
        if (u64map_get(&m, k * 0x10000) != (void *)(uintptr_t)(k + 1)) all = 0;
    CHECK(all);
    CHECK(u64map_get(&m, 0) == (void *)(uintptr_t)1);
    CHECK(u64map_get(&m, 0x10001) == NULL);
    u64map_put(&m, 0x10000, (void *)(uintptr_t)99);
    CHECK(u64map_get(&m, 0x10000) == (void *)(uintptr_t)99);
    CHECK_EQ_U(m.used, 5001);
    u64map_free(&m, count_free);
    CHECK_EQ_U(freed, 5001);
    CHECK(u64map_get(&m, 0) == NULL);
    return check_done("test_u64map");
}
