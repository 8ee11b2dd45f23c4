/* Byte work of the wait path (uwsgid/net/websocket.py, wsframes.py): a read that answers -errno
 * instead of raising, RFC 6455 unmasking a word at a time, a client frame's header checked
 * and its payload unmasked in one call, and the watchdog of batched frames. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "../uwsgi.h"

long uwsgi_read_nb(int fd, char *buf, size_t len) {
    ssize_t n = read(fd, buf, len);
    return n < 0 ? -(long)errno : (long)n;
}

void uwsgi_ws_unmask(char *buf, size_t len, const char *mask) {
    uint32_t m4;
    uint64_t m8, w;
    size_t i = 0;
    memcpy(&m4, mask, 4);
    m8 = ((uint64_t)m4 << 32) | m4;     /* the mask twice, in memory order on either endianness */
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, buf + i, 8);
        w ^= m8;
        memcpy(buf + i, &w, 8);
    }
    for (; i < len; i++)
        buf[i] ^= mask[i & 3];
}

long uwsgi_recv_nb(int fd, char *buf, size_t len, int flags) {
    ssize_t n = recv(fd, buf, len, flags | MSG_DONTWAIT);
    return n < 0 ? -(long)errno : (long)n;
}

long uwsgi_ws_frame(char *buf, size_t len, uint64_t max_size, uint64_t message_size) {
    const unsigned char *b = (const unsigned char *)buf;
    if (len < 2)
        return UWSGI_WS_MORE;
    unsigned fin = b[0] >> 7, opcode = b[0] & 0x0F, control = opcode >= 0x8;
    if (b[0] & 0x70)
        return UWSGI_WS_RESERVED;
    if (opcode > 0xA || (opcode > 0x2 && opcode < 0x8))
        return UWSGI_WS_OPCODE;
    if (!(b[1] & 0x80))
        return UWSGI_WS_UNMASKED;
    uint64_t n = b[1] & 0x7F;
    size_t head = 2;
    if (n == 126) {
        if (len < 4)
            return UWSGI_WS_MORE;
        n = (uint64_t)b[2] << 8 | b[3];
        head = 4;
    } else if (n == 127) {
        if (len < 10)
            return UWSGI_WS_MORE;
        n = 0;
        for (int i = 2; i < 10; i++)
            n = n << 8 | b[i];
        head = 10;
    }
    if (control) {
        if (n > 125)
            return UWSGI_WS_CONTROL_SIZE;
        if (!fin)
            return UWSGI_WS_CONTROL_FRAGMENTED;
    } else if (n > max_size || n >> 53 || (opcode == 0 ? message_size : 0) + n > max_size) {
        return UWSGI_WS_TOO_BIG;        /* known from the header: nothing more is read for it */
    }
    head += 4;      /* the mask */
    if (len < head || len - head < n)
        return UWSGI_WS_MORE;
    uwsgi_ws_unmask(buf + head, (size_t)n, buf + head - 4);
    return (long)(n << 9 | head << 5 | fin << 4 | opcode);
}

/* ---- the batch watchdog (uwsgid/net/wsbatch.py) ---------------------------------------------
 * A frame a green session sent waits for the end of its loop turn; an app that then blocks its
 * thread would hold it. This thread looks every `late` / 2 seconds, without the GIL, at when each
 * loop's batch began waiting (0: it does not), and writes a byte to `fd` when one waited `late`:
 * a Python thread blocked on that pipe then writes the frames. It ends after a second without a
 * batch waiting (no timer wakes an idle worker). The slots and the running flag are read and
 * written by Python directly (cffi), without a call: see wsbatch.py for the one race left. */
static double ws_since[UWSGI_WS_WATCH_SLOTS];
static int ws_running, ws_fd = -1;
static double ws_late;

static double ws_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);        /* Python's time.monotonic() */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ws_scan(double now, int *late) {
    int active = 0;
    for (int i = 0; i < UWSGI_WS_WATCH_SLOTS; i++) {
        double s;
        __atomic_load(&ws_since[i], &s, __ATOMIC_SEQ_CST);
        if (s > 0) {
            active = 1;
            if (now - s >= ws_late)
                *late = 1;
        }
    }
    return active;
}

static void *ws_watchdog(void *unused) {
    (void)unused;
    struct timespec nap = {0, (long)(ws_late / 2 * 1e9)};
    double idle_since = ws_now();
    for (;;) {
        nanosleep(&nap, NULL);
        double now = ws_now();
        int late = 0;
        if (ws_scan(now, &late))
            idle_since = now;
        if (late) {
            char c = 0;
            ssize_t r = write(ws_fd, &c, 1);    /* non-blocking: a full pipe already says it */
            (void)r;
        }
        if (now - idle_since >= 1.0) {
            __atomic_store_n(&ws_running, 0, __ATOMIC_SEQ_CST);
            if (!ws_scan(now, &late))           /* an arm that saw us running: go on */
                return NULL;
            __atomic_store_n(&ws_running, 1, __ATOMIC_SEQ_CST);
            idle_since = now;
        }
    }
}

double *uwsgi_ws_watch_slots(void) {
    return ws_since;
}

int *uwsgi_ws_watch_running(void) {
    return &ws_running;
}

int uwsgi_ws_watch_start(int fd, double late) {
    if (!(late > 0 && late < 1))
        return EINVAL;
    ws_fd = fd;
    ws_late = late;
    __atomic_store_n(&ws_running, 1, __ATOMIC_SEQ_CST);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, ws_watchdog, NULL);
    pthread_attr_destroy(&attr);
    if (rc)
        __atomic_store_n(&ws_running, 0, __ATOMIC_SEQ_CST);
    return rc;
}

void uwsgi_ws_watch_forked(void) {
    ws_running = 0;         /* the thread stayed in the parent */
    memset(ws_since, 0, sizeof ws_since);
}
