/* Byte work of the wait path (uwsgid/net/websocket.py): a read that answers -errno instead of
 * raising (most reads before a wait find nothing), and RFC 6455 unmasking a word at a time. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
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
