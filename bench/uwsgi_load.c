/* A uwsgi-protocol load client: N connections, each sends one request packet (the vars nginx's
 * stock uwsgi_params sends), reads the response until the server closes, and starts over; for
 * `--socket` without nginx in front (issue 16). One thread, epoll, non-blocking connects.
 *
 *     cc -O2 -o uwsgi_load bench/uwsgi_load.c
 *     uwsgi_load [-c CONNS] [-d SECONDS] [-m MODIFIER1] [-p PATH] HOST PORT
 *     uwsgi_load [-c CONNS] [-d SECONDS] [-m MODIFIER1] [-p PATH] UNIX-SOCKET-PATH
 *
 * Prints one JSON line: requests (responses that began with "HTTP/1.x 2"), errors (connect,
 * read, status: a response that was not 2xx or was empty), duration_us, rps.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CONNS = 4096, PACKET_CAP = 4096 };

struct conn {
    int fd;
    size_t sent;        /* bytes of the packet written so far */
    size_t got;         /* bytes of the response read so far */
    char head[16];      /* its first bytes: the status line's start */
};

static char packet[PACKET_CAP];
static size_t packet_len;
static struct sockaddr_in target;
static struct sockaddr_un target_unix;      /* used when the address is a path */
static int use_unix;
static int ep;
static unsigned long n_ok, n_connect_err, n_read_err, n_status_err;

static int add_var(const char *key, const char *val) {
    size_t kl = strlen(key), vl = strlen(val);
    if (packet_len + 4 + kl + vl > PACKET_CAP)
        return -1;
    unsigned char *p = (unsigned char *)packet + packet_len;
    p[0] = (unsigned char)(kl & 0xff); p[1] = (unsigned char)(kl >> 8);
    memcpy(p + 2, key, kl);
    p[2 + kl] = (unsigned char)(vl & 0xff); p[3 + kl] = (unsigned char)(vl >> 8);
    memcpy(p + 4 + kl, val, vl);
    packet_len += 4 + kl + vl;
    return 0;
}

static int build_packet(int modifier1, const char *path, const char *host, int port) {
    char portbuf[16], uri[1024];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(uri, sizeof uri, "%s", path);
    char *q = strchr(uri, '?');
    const char *query = q ? q + 1 : "";
    packet_len = 4;
    if (add_var("QUERY_STRING", query) || add_var("REQUEST_METHOD", "GET") ||
        add_var("CONTENT_TYPE", "") || add_var("CONTENT_LENGTH", "") ||
        add_var("REQUEST_URI", path) || add_var("DOCUMENT_ROOT", "/usr/share/nginx/html") ||
        add_var("SERVER_PROTOCOL", "HTTP/1.1") || add_var("REQUEST_SCHEME", "http") ||
        add_var("REMOTE_ADDR", "127.0.0.1") || add_var("REMOTE_PORT", "50000") ||
        add_var("SERVER_PORT", portbuf) || add_var("SERVER_NAME", host) ||
        add_var("HTTP_HOST", host) || add_var("HTTP_USER_AGENT", "uwsgi_load"))
        return -1;
    if (q)
        *q = '\0';
    if (add_var("PATH_INFO", uri))
        return -1;
    size_t size = packet_len - 4;
    packet[0] = (char)modifier1;
    packet[1] = (char)(size & 0xff);
    packet[2] = (char)(size >> 8);
    packet[3] = 0;
    return 0;
}

static void start(struct conn *c) {
    c->sent = c->got = 0;
    c->fd = socket(use_unix ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        perror("uwsgi_load: socket");
        exit(1);
    }
    int r = use_unix ? connect(c->fd, (struct sockaddr *)&target_unix, sizeof target_unix)
                     : connect(c->fd, (struct sockaddr *)&target, sizeof target);
    if (r < 0 && errno != EINPROGRESS) {
        n_connect_err++;
        close(c->fd);
        c->fd = -1;
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void finish(struct conn *c, int read_error) {
    if (read_error)
        n_read_err++;
    else if (c->got >= 10 && memcmp(c->head, "HTTP/1.", 7) == 0 && c->head[9] == '2')
        n_ok++;
    else
        n_status_err++;
    close(c->fd);       /* also takes it out of the epoll set */
    c->fd = -1;
}

static void on_event(struct conn *c, uint32_t events) {
    if (c->sent < packet_len && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        ssize_t n = send(c->fd, packet + c->sent, packet_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            n_connect_err++;
            close(c->fd);
            c->fd = -1;
            return;
        }
        c->sent += (size_t)n;
        if (c->sent == packet_len) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        return;
    }
    for (;;) {
        char buf[65536];
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            if (c->got < sizeof c->head) {
                size_t take = sizeof c->head - c->got < (size_t)n ? sizeof c->head - c->got : (size_t)n;
                memcpy(c->head + c->got, buf, take);
            }
            c->got += (size_t)n;
            continue;
        }
        if (n == 0) {
            finish(c, 0);
            return;
        }
        if (errno == EAGAIN || errno == EINTR)
            return;
        finish(c, 1);
        return;
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int conns = 32, modifier1 = 0, opt;
    double seconds = 5;
    const char *path = "/";
    while ((opt = getopt(argc, argv, "c:d:m:p:")) != -1) {
        if (opt == 'c') conns = atoi(optarg);
        else if (opt == 'd') seconds = atof(optarg);
        else if (opt == 'm') modifier1 = atoi(optarg);
        else if (opt == 'p') path = optarg;
        else {
            fprintf(stderr, "usage: %s [-c CONNS] [-d SECONDS] [-m MODIFIER1] [-p PATH] HOST PORT\n", argv[0]);
            return 2;
        }
    }
    use_unix = argc - optind == 1 && argv[optind][0] == '/';
    if ((argc - optind != 2 && !use_unix) || conns < 1 || conns > MAX_CONNS || seconds <= 0 ||
        modifier1 < 0 || modifier1 > 255) {
        fprintf(stderr, "usage: %s [-c 1-%d] [-d SECONDS>0] [-m 0-255] [-p PATH] HOST PORT | /UNIX/PATH\n",
                argv[0], MAX_CONNS);
        return 2;
    }
    const char *host = use_unix ? "localhost" : argv[optind];
    int port = use_unix ? 80 : atoi(argv[optind + 1]);
    if (use_unix) {
        if (strlen(argv[optind]) >= sizeof target_unix.sun_path) {
            fprintf(stderr, "uwsgi_load: %s: socket path too long\n", argv[optind]);
            return 2;
        }
        target_unix.sun_family = AF_UNIX;
        strcpy(target_unix.sun_path, argv[optind]);
    } else {
        target.sin_family = AF_INET;
        target.sin_port = htons((uint16_t)port);
        if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &target.sin_addr) != 1) {
            fprintf(stderr, "uwsgi_load: %s:%s is not an IPv4 address and port\n", host, argv[optind + 1]);
            return 2;
        }
    }
    if (build_packet(modifier1, path, host, port)) {
        fprintf(stderr, "uwsgi_load: path too long\n");
        return 2;
    }
    static struct conn pool[MAX_CONNS];
    ep = epoll_create1(0);
    double t0 = now(), end = t0 + seconds;
    for (int i = 0; i < conns; i++)
        start(&pool[i]);
    struct epoll_event evs[256];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        for (int i = 0; i < conns; i++)
            if (pool[i].fd < 0 && now() < end)
                start(&pool[i]);
    }
    double took = now() - t0;
    printf("{\"requests\": %lu, \"errors\": {\"connect\": %lu, \"read\": %lu, \"status\": %lu}, "
           "\"duration_us\": %.0f, \"rps\": %.1f}\n",
           n_ok, n_connect_err, n_read_err, n_status_err, took * 1e6, (double)n_ok / took);
    return 0;
}
