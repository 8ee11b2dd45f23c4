/* The scoreboard's per-request updates (uwsgid/observe/scoreboard.py owns the layout and says why it
 * is lock-free): one call each instead of several struct round trips in Python. */
#include <string.h>
#include <time.h>
#include "../uwsgi.h"

static inline uint64_t get64(const char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void put64(char *p, uint64_t v) {
    memcpy(p, &v, 8);
}

void uwsgi_sb_begin(char *mem, size_t start_off, const char *uri, size_t len, size_t max) {
    struct timespec ts;
    uint64_t now;
    uint16_t n = (uint16_t)(len < max ? len : max);
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    put64(mem + start_off, now ? now : 1);
    memcpy(mem + start_off + 8, &n, 2);
    memcpy(mem + start_off + 10, uri, n);
}

void uwsgi_sb_end(char *mem, size_t core_off, size_t app_off, uint64_t tx, int64_t rt_us,
                  int exception) {
    char *c = mem + core_off;
    put64(c, get64(c) + 1);
    if (exception)
        put64(c + 8, get64(c + 8) + 1);
    put64(c + 16, get64(c + 16) + tx);
    if (rt_us > 0)
        put64(c + 24, get64(c + 24) + (uint64_t)rt_us);
    put64(c + 32, 0);
    put64(mem, get64(mem) + 1);
    if (app_off) {
        char *a = mem + app_off;
        put64(a, get64(a) + 1);
        if (exception)
            put64(a + 8, get64(a + 8) + 1);
    }
}
