/* uwsgi.h: the core's C API, the single declaration used both by the C files in core/
 * (#include "uwsgi.h") and, preprocessor lines stripped, as cffi's cdef for the `_uwsgi`
 * module. Keep it cdef-friendly: plain prototypes, structs and enums, no macros with values.
 *
 * Model: picohttpparser. Stateless functions, no allocation, the caller owns every buffer and
 * the results point into them (offsets). Nothing here reads past `len`.
 */
#ifndef UWSGI_H
#define UWSGI_H

#include <stddef.h>
#include <stdint.h>

/* uwsgi packet header: u8 modifier1, u16le datasize, u8 modifier2. */
enum uwsgi_packet_const {
    UWSGI_HEADER_SIZE = 4
};

/* Error codes of the packet codec (distinct, negative). */
enum uwsgi_packet_error {
    UWSGI_ERR_INCOMPLETE = -1,  /* header: fewer than 4 bytes */
    UWSGI_ERR_EMPTY_KEY = -2,   /* a var with a zero-length key */
    UWSGI_ERR_TRUNCATED = -3,   /* a length field or a key/value runs past the end */
    UWSGI_ERR_TOO_MANY = -4,    /* more than max_vars vars */
    UWSGI_ERR_NOSPACE = -5,     /* encoder: destination too small */
    UWSGI_ERR_ARGS = -6         /* invalid arguments (NULL buffer, negative max_vars, oversize) */
};

/* Parse the 4-byte header. Returns UWSGI_HEADER_SIZE or UWSGI_ERR_INCOMPLETE. */
int uwsgi_parse_header(const char *buf, size_t len,
                       uint8_t *modifier1, uint16_t *datasize, uint8_t *modifier2);

/* Parse the vars block (the `datasize` bytes after the header).
 * For var i, offsets[4*i .. 4*i+3] = key offset, key length, value offset, value length
 * (offsets into buf). `offsets` must hold 4 * max_vars entries.
 * Returns the number of vars (>= 0) or a negative uwsgi_packet_error. */
int uwsgi_parse_vars(const char *buf, size_t len, int max_vars, uint32_t *offsets);

/* Append one var (u16le keylen, key, u16le vallen, value) at dst.
 * Returns the bytes written, or UWSGI_ERR_NOSPACE / UWSGI_ERR_ARGS (key empty or > 65535). */
int uwsgi_encode_var(char *dst, size_t cap, const char *key, size_t keylen,
                     const char *val, size_t vallen);

/* Write the 4-byte header at dst (cap >= 4). Returns 4 or a negative error. */
int uwsgi_build_header(char *dst, size_t cap, uint8_t modifier1, size_t datasize, uint8_t modifier2);

/* Parse the vars block like uwsgi_parse_vars, but copy the keys to keys and the values to
 * vals, each joined by NUL bytes (lens[0], lens[1]: their lengths; cap >= len is enough for
 * either): two bytes.split() in Python then yield every key and value, where slicing by
 * offsets costs a Python operation each, and the keys, the same from request to request
 * behind one front end, can be looked up as one string. A key or value holding a NUL byte
 * itself shows as more than n parts (the caller falls back to the offsets).
 * Returns the number of vars n or a negative uwsgi_packet_error (UWSGI_ERR_NOSPACE: cap < len). */
int uwsgi_parse_vars_split(const char *buf, size_t len, int max_vars, char *keys, char *vals,
                           size_t cap, uint32_t *lens);

/* accept4() a connection on the listening socket lfd, non-blocking and close-on-exec: one
 * syscall where accept() + setblocking() take two, and no exception when none is pending.
 * The peer's sockaddr goes to addr (addrcap bytes; its length to *addrlen) unless addr is
 * NULL. Returns the new fd or -errno (-EAGAIN: nothing pending). */
int uwsgi_accept(int lfd, void *addr, unsigned int addrcap, unsigned int *addrlen);

/* send() the last bytes of a response on a connection that the caller closes right after, with
 * MSG_MORE: the kernel holds them, and close() sends them with the FIN in one segment (one packet
 * less for each end to process, and the peer reads the body and the end at once). Never use it
 * without the close(): the bytes would wait. Returns the bytes queued or -errno. */
int uwsgi_send_last(int fd, const char *buf, size_t len);

/* Scoreboard updates on its shared memory (layout: uwsgid/observe/scoreboard.py; u64 fields in host
 * order, little-endian on the targets we build for). begin: the core's start time (us since the
 * epoch, never 0) at start_off, then a u16 length and the URI (at most max bytes). end: the
 * core's requests, exceptions, tx and running time (u64s at core_off) counted and its start
 * cleared, the instance total at offset 0 counted, and the app's (requests, exceptions) at
 * app_off unless app_off is 0. */
void uwsgi_sb_begin(char *mem, size_t start_off, const char *uri, size_t len, size_t max);
void uwsgi_sb_end(char *mem, size_t core_off, size_t app_off, uint64_t tx, int64_t rt_us,
                  int exception);

/* Small string helpers (NUL-terminated arguments); 1 = true, 0 = false. */
int uwsgi_startswith(const char *s, const char *prefix);
int uwsgi_endswith(const char *s, const char *suffix);
int uwsgi_contains(const char *s, const char *needle);
/* Length-delimited forms, for buffers that are not NUL-terminated. */
int uwsgi_startswith_n(const char *s, size_t slen, const char *prefix, size_t plen);
int uwsgi_endswith_n(const char *s, size_t slen, const char *suffix, size_t sufflen);
/* Case-insensitive ASCII comparison of two length-delimited strings: 1 when equal. */
int uwsgi_strncaseeq(const char *a, size_t alen, const char *b, size_t blen);

/* A file baked into the executable or into a NAME_plugin.so (its Python package, data
 * included). Tables end with an entry whose path is NULL. */
struct uwsgi_baked_file {
    const char *path;            /* relative to the plugin's directory: "lua_plugin/__init__.py" */
    const unsigned char *data;
    size_t len;
};

/* WebSocket and raw-socket I/O (core/wsframe.c). read() into buf: the bytes read (0: the end of
 * the stream) or -errno (-EAGAIN: nothing yet), never an exception in the caller. */
long uwsgi_read_nb(int fd, char *buf, size_t len);
/* XOR len bytes of buf in place with the 4-byte RFC 6455 mask (byte i with mask[i % 4]). */
void uwsgi_ws_unmask(char *buf, size_t len, const char *mask);
/* recv() with MSG_DONTWAIT | flags (MSG_PEEK: is an idle pooled connection still fit?), answered
 * as uwsgi_read_nb. */
long uwsgi_recv_nb(int fd, char *buf, size_t len, int flags);
/* The RFC 6455 client frame at the start of buf: its header checked, its payload unmasked in
 * place when the frame is whole. Returns (payload length << 9 | header length with the mask << 5
 * | FIN << 4 | opcode), or one of these (a data frame over max_size bytes, counting message_size
 * for a continuation, is refused as soon as its header is in): */
enum uwsgi_ws_frame_error {
    UWSGI_WS_MORE = -1, UWSGI_WS_RESERVED = -2, UWSGI_WS_OPCODE = -3, UWSGI_WS_UNMASKED = -4,
    UWSGI_WS_CONTROL_SIZE = -5, UWSGI_WS_CONTROL_FRAGMENTED = -6, UWSGI_WS_TOO_BIG = -7
};
long uwsgi_ws_frame(char *buf, size_t len, uint64_t max_size, uint64_t message_size);
/* The watchdog of batched WebSocket frames (uwsgid/net/wsbatch.py): a thread that writes a byte
 * to fd when a slot (UWSGI_WS_WATCH_SLOTS doubles: a batch's start, time.monotonic(); 0: not
 * waiting) is `late` seconds old; it ends after a second with none waiting (*running: 0).
 * start returns 0 or an errno; forked resets the state in a child (the thread stayed in the
 * parent). */
enum uwsgi_ws_watch_const { UWSGI_WS_WATCH_SLOTS = 64 };
double *uwsgi_ws_watch_slots(void);
int *uwsgi_ws_watch_running(void);
int uwsgi_ws_watch_start(int fd, double late);
void uwsgi_ws_watch_forked(void);

#ifdef UWSGI_EXECUTABLE
/* Only in the ./uwsgi executable (core/main.c). */

/* Overwrite the process title shown by ps (argv memory) and the thread name (comm). */
int uwsgi_set_proctitle(const char *title);
/* The argv the executable was started with (before any proctitle change). */
int uwsgi_argc(void);
const char *uwsgi_argv(int i);
#endif

#endif
