/* Socket helpers of the worker's hot path: one syscall each, no allocation, errors as -errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include "../uwsgi.h"

int uwsgi_accept(int lfd, void *addr, unsigned int addrcap, unsigned int *addrlen) {
    socklen_t len = (socklen_t)addrcap;
    int fd = accept4(lfd, (struct sockaddr *)addr, addr ? &len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (addr && addrlen)
        *addrlen = (unsigned int)len;
    return fd;
}

int uwsgi_send_last(int fd, const char *buf, size_t len) {
    ssize_t n = send(fd, buf, len > INT_MAX ? INT_MAX : len, MSG_MORE | MSG_NOSIGNAL);
    return n < 0 ? -errno : (int)n;
}
