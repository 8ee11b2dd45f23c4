/* The cheapest uwsgi upstream there is: accept, read the request packet, answer a fixed
 * response, close. Behind the nginx scenarios it measures nginx's own ceiling on this machine:
 * no server can be faster behind that nginx than an upstream that does no work.
 *
 *     null_upstream PORT BODY      (one process, one thread: it is never the bottleneck)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT BODY\n", argv[0]);
        return 2;
    }
    static char resp[4096];
    size_t blen = strlen(argv[2]);
    int rlen = snprintf(resp, sizeof resp,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n\r\n%s",
                        blen, argv[2]);
    if (rlen < 0 || (size_t)rlen >= sizeof resp) {
        fprintf(stderr, "body too long\n");
        return 2;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1, defer = 4;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(ls, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);   /* the request is there */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) {
        perror("null_upstream: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    char buf[65536];
    for (;;) {
        struct epoll_event out[1];
        if (epoll_wait(ep, out, 1, -1) <= 0)
            continue;
        for (;;) {
            /* non-blocking: with deferred accept the packet is there; a connection without
             * one is just closed (it never holds the loop) */
            int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
            if (fd < 0)
                break;
            if (read(fd, buf, sizeof buf) > 0)
                send(fd, resp, (size_t)rlen, MSG_NOSIGNAL);
            close(fd);
        }
    }
}
