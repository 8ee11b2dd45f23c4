/* A WebSocket echo load client (bench scenario ws-echo): N connections, each sends one masked
 * text frame and waits for its echo before sending the next, for a duration. One thread, epoll.
 * Its own work is about 1 us of CPU per message (the Python client, bench/harness/wsload.py:
 * 3); the 8-9 us the kernel spends on each loopback write and read are any client's.
 *
 *     cc -O2 -o ws_load bench/ws_load.c          (includes bench/ws_sha1.h)
 *     ws_load [-c CONNS] [-d SECONDS] [-s SIZE] [-p PATH] HOST PORT
 *
 * Every connection does the HTTP/1.1 Upgrade handshake (the 101 and its Sec-WebSocket-Accept are
 * checked), then all start at once. Every frame gets a fresh mask and carries its connection and
 * sequence number, so an echo is checked whole (length, opcode, every byte) against the message
 * it answers; a wrong one is a "mismatch" error, not a message. A server ping is answered with a
 * pong. Prints one line, "BENCHJSON {...}", with the keys of wsload.py's: messages, errors,
 * messages_per_s, rtt_ms percentiles (send to whole echo), client_cpu_s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ws_sha1.h"

enum { MAX_CONNS = 4096, MAX_SIZE = 65535, HEAD_CAP = 4096, BUF_CAP = 2 * (MAX_SIZE + 16) };
enum state { CONNECTING, HANDSHAKE, OPEN, DEAD };

struct conn {
    int fd, id;
    enum state state;
    char key[25];               /* the Sec-WebSocket-Key sent (base64 of 16 bytes) */
    unsigned char *in;          /* bytes received and not consumed yet */
    size_t in_len;
    unsigned char *out;         /* the frame being written (a message, or a pong) */
    size_t out_len, out_sent;
    uint64_t seq;               /* of the message in flight */
    int awaiting;               /* its echo has not come yet */
    double sent_at;
};

static struct conn pool[MAX_CONNS];
static int ep, nconns, size;
static const char *path = "/";
static char host_hdr[128];
static struct sockaddr_in target;
static unsigned long n_messages, n_pings, e_connect, e_handshake, e_mismatch, e_closed, e_socket;
static char sample[240];
static double *rtts;
static size_t n_rtts, cap_rtts;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t random32(void) {            /* xorshift64*: masks need not be secret here */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

static void note(const char *what, const struct conn *c, const char *detail) {
    if (!sample[0])
        snprintf(sample, sizeof sample, "connection %d: %s%s%.160s", c->id, what, detail ? ": " : "", detail ? detail : "");
}

/* ---- the handshake's accept key (SHA-1 and base64: ws_sha1.h) ------------------------------ */
static void accept_for(const char *key, char out[29]) {
    unsigned char buf[64], digest[20];
    size_t kl = strlen(key);
    memcpy(buf, key, kl);
    memcpy(buf + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    sha1(buf, kl + 36, digest);
    base64(digest, 20, out);
}

/* ---- frames --------------------------------------------------------------------------------- */
/* The payload of message `seq` on connection `id`: "<id>:<seq>;" then the alphabet from a place
 * that depends on both, all ASCII (a text message must be UTF-8). */
static char alphabet[MAX_SIZE + 26];

static void payload_of(int id, uint64_t seq, unsigned char *p) {
    char head[48];
    int n = snprintf(head, sizeof head, "%d:%llu;", id, (unsigned long long)seq);
    if (n > size)
        n = size;
    memcpy(p, head, (size_t)n);
    memcpy(p + n, alphabet + (n + id + seq) % 26, (size_t)(size - n));
}

/* A masked client frame (FIN, opcode) of len payload bytes into out; its length. */
static size_t client_frame(unsigned char *out, int opcode, const unsigned char *payload, size_t len) {
    size_t h = 2;
    out[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        out[1] = (unsigned char)(0x80 | len);
    } else {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        h = 4;
    }
    uint32_t m = random32();
    memcpy(out + h, &m, 4);
    uint64_t m8 = (uint64_t)m << 32 | m, w;    /* the mask twice, in memory order */
    unsigned char *dst = out + h + 4;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, payload + i, 8);
        w ^= m8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++)
        dst[i] = payload[i] ^ out[h + (i & 3)];
    return h + 4 + len;
}

static void kill_conn(struct conn *c, unsigned long *counter, const char *what, const char *detail) {
    if (counter)
        (*counter)++;
    if (what)
        note(what, c, detail);
    close(c->fd);       /* also takes it out of the epoll set */
    c->fd = -1;
    c->state = DEAD;
}

static void want(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is left of c->out; 0 when all of it is out, 1 when the socket is full, -1 failed. */
static int flush_out(struct conn *c) {
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                want(c, EPOLLIN | EPOLLOUT);
                return 1;
            }
            kill_conn(c, &e_socket, "send", strerror(errno));
            return -1;
        }
        c->out_sent += (size_t)n;
    }
    return 0;
}

/* Room for one more frame after what is still to go out of c->out (that moves to its start). */
static unsigned char *room(struct conn *c) {
    size_t rest = c->out_len - c->out_sent;
    if (c->out_sent)
        memmove(c->out, c->out + c->out_sent, rest);
    c->out_len = rest;
    c->out_sent = 0;
    return c->out + rest;
}

static void push(struct conn *c, size_t len) {
    c->out_len += len;
    flush_out(c);
}

static void send_message(struct conn *c) {
    unsigned char payload[MAX_SIZE];
    c->seq++;
    payload_of(c->id, c->seq, payload);
    c->sent_at = now();
    c->awaiting = 1;
    unsigned char *at = room(c);
    push(c, client_frame(at, 0x1, payload, (size_t)size));
}

/* ---- the handshake -------------------------------------------------------------------------- */
static void send_request(struct conn *c) {
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = random32();
        memcpy(raw + i, &r, 4);
    }
    base64(raw, 16, c->key);
    int n = snprintf((char *)room(c), HEAD_CAP,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host_hdr, c->key);
    c->state = HANDSHAKE;
    want(c, EPOLLIN);
    push(c, (size_t)n);
}

static const char *header(const char *head, const char *name, size_t *len) {
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl, *end = strstr(v, "\r\n");
            while (*v == ' ' || *v == '\t')
                v++;
            *len = (size_t)(end - v);
            while (*len && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
                (*len)--;
            return v;
        }
    }
    return NULL;
}

/* The 101 is whole in c->in: check it, keep what follows it (a frame may come at once). */
static int handshake_done(struct conn *c, size_t head_len) {
    char head[HEAD_CAP + 1], want_accept[29];
    memcpy(head, c->in, head_len);
    head[head_len] = '\0';
    size_t len = 0;
    const char *accept = header(head, "Sec-WebSocket-Accept", &len);
    accept_for(c->key, want_accept);
    if (strncmp(head, "HTTP/1.1 101", 12) != 0 || !accept || len != 28 || memcmp(accept, want_accept, 28) != 0) {
        char *eol = strstr(head, "\r\n");
        if (eol)
            *eol = '\0';
        int is_101 = strncmp(head, "HTTP/1.1 101", 12) == 0;
        kill_conn(c, &e_handshake, is_101 ? "a missing or wrong Sec-WebSocket-Accept" : "the handshake answered",
                  head);
        return -1;
    }
    memmove(c->in, c->in + head_len, c->in_len - head_len);
    c->in_len -= head_len;
    c->state = OPEN;
    return 0;
}

/* ---- echoes --------------------------------------------------------------------------------- */
static void record_rtt(double rtt) {
    if (n_rtts == cap_rtts) {
        cap_rtts = cap_rtts ? 2 * cap_rtts : 1 << 16;
        rtts = realloc(rtts, cap_rtts * sizeof *rtts);
        if (!rtts) {
            perror("ws_load: realloc");
            exit(1);
        }
    }
    rtts[n_rtts++] = rtt;
}

/* Take the whole frames at the start of c->in; 0, or -1 when the connection ended. */
static int take_frames(struct conn *c, int running) {
    size_t pos = 0;
    while (c->in_len - pos >= 2) {
        unsigned char *f = c->in + pos;
        size_t avail = c->in_len - pos, h = 2;
        uint64_t n = f[1] & 0x7F;
        if (f[1] & 0x80) {
            kill_conn(c, &e_mismatch, "masked server frame", NULL);
            return -1;
        }
        if (n == 126) {
            if (avail < 4)
                break;
            n = (uint64_t)f[2] << 8 | f[3];
            h = 4;
        } else if (n == 127) {
            kill_conn(c, &e_mismatch, "a frame over 64 KiB", NULL);
            return -1;
        }
        if (avail < h + n)
            break;
        int op = f[0] & 0x0F, fin = f[0] & 0x80;
        unsigned char *body = f + h;
        pos += h + n;
        if (op == 0x9) {                    /* a server ping (uWSGI's): pong, masked */
            if (n > 125 || !fin) {
                kill_conn(c, &e_mismatch, "a ping over 125 bytes or fragmented", NULL);
                return -1;
            }
            n_pings++;
            unsigned char *at = room(c);
            push(c, client_frame(at, 0xA, body, (size_t)n));
        } else if (op == 0xA) {
            continue;
        } else if (op == 0x8) {
            char why[64];
            snprintf(why, sizeof why, "code %d", n >= 2 ? body[0] << 8 | body[1] : 1005);
            kill_conn(c, &e_closed, "the server closed", why);
            return -1;
        } else {
            unsigned char expect[MAX_SIZE];
            payload_of(c->id, c->seq, expect);
            if (!c->awaiting || op != 0x1 || !fin || n != (uint64_t)size || memcmp(body, expect, (size_t)size) != 0) {
                char detail[112];
                snprintf(detail, sizeof detail, "%sopcode %d, fin %d, %llu bytes, begins \"%.24s\"",
                         c->awaiting ? "" : "unasked: ", op, fin != 0, (unsigned long long)n, n ? (const char *)body : "");
                for (char *p = detail; *p; p++)
                    if (*p < 32 || *p > 126 || *p == '\\')
                        *p = '?';
                kill_conn(c, &e_mismatch, "wrong echo", detail);
                return -1;
            }
            c->awaiting = 0;
            if (running) {
                n_messages++;
                record_rtt(now() - c->sent_at);
                send_message(c);        /* at once: a duplicate echo that follows is then wrong */
            }
        }
        if (c->state == DEAD)
            return -1;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return 0;
}

static void on_event(struct conn *c, uint32_t events, int running) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            kill_conn(c, &e_connect, "connect", strerror(err));
            return;
        }
        send_request(c);
        return;
    }
    if ((events & EPOLLOUT) && c->out_sent < c->out_len) {
        if (flush_out(c) != 0)
            return;
        want(c, EPOLLIN);
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    ssize_t n;
    do
        n = read(c->fd, c->in + c->in_len, BUF_CAP - c->in_len);   /* never 0 bytes: see take_frames */
    while (n < 0 && errno == EINTR);
    if (n == 0) {
        kill_conn(c, &e_closed, "the server closed the connection", c->state == HANDSHAKE ? "during the handshake" : NULL);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN)
            kill_conn(c, &e_socket, "read", strerror(errno));
        return;
    }
    c->in_len += (size_t)n;
    if (c->state == HANDSHAKE) {
        unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end || end + 4 - c->in > HEAD_CAP) {
            if (c->in_len > HEAD_CAP)
                kill_conn(c, &e_handshake, "handshake answer over 4 KiB", NULL);
            return;
        }
        if (handshake_done(c, (size_t)(end + 4 - c->in)) != 0)
            return;
    }
    take_frames(c, running);    /* what is left is less than a frame: BUF_CAP holds two */
}

static void start(struct conn *c) {
    c->in_len = c->out_len = c->out_sent = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        perror("ws_load: socket");
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        kill_conn(c, &e_connect, "connect", strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_ms(const char *name, double q, int last) {
    if (!n_rtts)
        printf("\"%s\": null%s", name, last ? "" : ", ");
    else {
        size_t i = q >= 1 ? n_rtts - 1 : (size_t)(q * (double)n_rtts);
        printf("\"%s\": %.4f%s", name, rtts[i < n_rtts ? i : n_rtts - 1] * 1000, last ? "" : ", ");
    }
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 32)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static int usage(const char *prog, const char *why) {
    fprintf(stderr, "ws_load: %s\nusage: %s [-c 1-%d] [-d SECONDS>0] [-s 1-%d] [-p PATH] HOST PORT\n", why, prog,
            MAX_CONNS, MAX_SIZE);
    return 2;
}

int main(int argc, char **argv) {
    double seconds = 5;
    int opt;
    char why[48];
    nconns = 64;
    size = 1024;
    opterr = 0;         /* getopt's own message would not say ws_load: first */
    while ((opt = getopt(argc, argv, "c:d:s:p:")) != -1) {
        if (opt == 'c') nconns = atoi(optarg);
        else if (opt == 'd') seconds = atof(optarg);
        else if (opt == 's') size = atoi(optarg);
        else if (opt == 'p') path = optarg;
        else {
            snprintf(why, sizeof why, "unknown option or missing value: -%c", optopt);
            return usage(argv[0], why);
        }
    }
    if (argc - optind != 2)
        return usage(argv[0], "HOST and PORT are needed");
    if (nconns < 1 || nconns > MAX_CONNS)
        return usage(argv[0], "-c (connections) is out of range");
    if (!(seconds > 0))
        return usage(argv[0], "-d (seconds) must be above 0");
    if (size < 1 || size > MAX_SIZE)
        return usage(argv[0], "-s (message size) is out of range");
    if (path[0] != '/' || strlen(path) > 1024 || strpbrk(path, " \r\n"))
        return usage(argv[0], "-p (path) must start with / and hold no space or line break");
    const char *host = argv[optind];
    int port = atoi(argv[optind + 1]);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &target.sin_addr) != 1)
        return usage(argv[0], "HOST PORT must be an IPv4 address and a port");
    snprintf(host_hdr, sizeof host_hdr, "%s:%d", host, port);
    rng ^= (uint64_t)getpid() << 32 ^ (uint64_t)(now() * 1e9);

    for (size_t i = 0; i < sizeof alphabet; i++)
        alphabet[i] = (char)('a' + i % 26);
    ep = epoll_create1(0);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &pool[i];
        c->id = i;
        c->in = malloc(BUF_CAP);
        c->out = malloc(MAX_SIZE + HEAD_CAP);
        if (!c->in || !c->out) {
            perror("ws_load: malloc");
            return 1;
        }
        start(c);
    }
    /* every connection through its handshake (10 s at most), then the clock starts */
    struct epoll_event evs[256];
    double give_up = now() + 10;
    for (;;) {
        int pending = 0;
        for (int i = 0; i < nconns; i++)
            pending += pool[i].state == CONNECTING || pool[i].state == HANDSHAKE;
        if (!pending || now() > give_up)
            break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events, 0);
    }
    int opened = 0;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &pool[i];
        if (c->state == CONNECTING || c->state == HANDSHAKE)
            kill_conn(c, c->state == CONNECTING ? &e_connect : &e_handshake, "no handshake within 10 s", NULL);
        else if (c->state == OPEN)
            opened++;
    }
    double t0 = now(), end = t0 + seconds, t = t0;
    for (int i = 0; i < nconns; i++)
        if (pool[i].state == OPEN)
            send_message(&pool[i]);
    while ((t = now()) < end) {
        int ms = (int)((end - t) * 1000) + 1;
        int n = epoll_wait(ep, evs, 256, ms < 100 ? ms : 100);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events, 1);
    }
    double took = t - t0;
    static const unsigned char close_1000[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    for (int i = 0; i < nconns; i++)
        if (pool[i].state != DEAD) {
            /* a courtesy (not checked): the server sees the end of the stream anyway */
            send(pool[i].fd, close_1000, sizeof close_1000, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(pool[i].fd);
        }
    qsort(rtts, n_rtts, sizeof *rtts, cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("BENCHJSON {\"client\": \"c\", \"connections\": %d, \"opened\": %d, \"size\": %d, \"messages\": %lu, "
           "\"pings_answered\": %lu, \"errors\": {\"connect\": %lu, \"handshake\": %lu, \"mismatch\": %lu, "
           "\"closed\": %lu, \"socket\": %lu}, \"error_sample\": ",
           nconns, opened, size, n_messages, n_pings, e_connect, e_handshake, e_mismatch, e_closed, e_socket);
    if (sample[0])
        json_string(sample);
    else
        printf("null");
    printf(", \"duration_s\": %.6f, \"messages_per_s\": %.1f, \"rtt_ms\": {", took,
           took > 0 ? (double)n_messages / took : 0.0);
    print_ms("p50", 0.5, 0);
    print_ms("p90", 0.9, 0);
    print_ms("p99", 0.99, 0);
    print_ms("max", 1, 1);
    printf("}, \"client_cpu_s\": %.4f}\n", cpu);
    return 0;
}
