/* The uwsgi packet codec: header and vars, stateless, no allocation, bounds-checked. */
#include <string.h>
#include "../uwsgi.h"

static inline uint16_t rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline void wr16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
}

int uwsgi_parse_header(const char *buf, size_t len,
                       uint8_t *modifier1, uint16_t *datasize, uint8_t *modifier2) {
    const unsigned char *p = (const unsigned char *)buf;
    if (buf == NULL || len < UWSGI_HEADER_SIZE)
        return UWSGI_ERR_INCOMPLETE;
    if (modifier1) *modifier1 = p[0];
    if (datasize) *datasize = rd16(p + 1);
    if (modifier2) *modifier2 = p[3];
    return UWSGI_HEADER_SIZE;
}

/* Reads the var at *pos: sets its key/value offsets and lengths and advances *pos past it.
 * Every length check is written as "remaining < need" so nothing can overflow. */
static inline int next_var(const unsigned char *p, size_t len, size_t *pos,
                           size_t *koff, size_t *klen, size_t *voff, size_t *vlen) {
    size_t at = *pos;
    if (len - at < 2)
        return UWSGI_ERR_TRUNCATED;
    *klen = rd16(p + at);
    at += 2;
    if (*klen == 0)
        return UWSGI_ERR_EMPTY_KEY;
    if (len - at < *klen)
        return UWSGI_ERR_TRUNCATED;
    *koff = at;
    at += *klen;
    if (len - at < 2)
        return UWSGI_ERR_TRUNCATED;
    *vlen = rd16(p + at);
    at += 2;
    if (len - at < *vlen)
        return UWSGI_ERR_TRUNCATED;
    *voff = at;
    *pos = at + *vlen;
    return 0;
}

int uwsgi_parse_vars(const char *buf, size_t len, int max_vars, uint32_t *offsets) {
    const unsigned char *p = (const unsigned char *)buf;
    size_t pos = 0;
    int n = 0;
    if (max_vars < 0 || (len > 0 && (buf == NULL || offsets == NULL)) || len > UINT32_MAX)
        return UWSGI_ERR_ARGS;
    while (pos < len) {
        size_t klen, vlen, koff, voff;
        int err = next_var(p, len, &pos, &koff, &klen, &voff, &vlen);
        if (err)
            return err;
        if (n >= max_vars)
            return UWSGI_ERR_TOO_MANY;
        offsets[4 * n] = (uint32_t)koff;
        offsets[4 * n + 1] = (uint32_t)klen;
        offsets[4 * n + 2] = (uint32_t)voff;
        offsets[4 * n + 3] = (uint32_t)vlen;
        n++;
    }
    return n;
}

int uwsgi_encode_var(char *dst, size_t cap, const char *key, size_t keylen,
                     const char *val, size_t vallen) {
    unsigned char *d = (unsigned char *)dst;
    size_t need;
    if (dst == NULL || key == NULL || keylen == 0 || keylen > 0xffff || vallen > 0xffff ||
        (vallen > 0 && val == NULL))
        return UWSGI_ERR_ARGS;
    need = 4 + keylen + vallen;
    if (cap < need)
        return UWSGI_ERR_NOSPACE;
    wr16(d, (uint16_t)keylen);
    memcpy(d + 2, key, keylen);
    wr16(d + 2 + keylen, (uint16_t)vallen);
    if (vallen)
        memcpy(d + 4 + keylen, val, vallen);
    return (int)need;
}

int uwsgi_build_header(char *dst, size_t cap, uint8_t modifier1, size_t datasize, uint8_t modifier2) {
    unsigned char *d = (unsigned char *)dst;
    if (dst == NULL || datasize > 0xffff)
        return UWSGI_ERR_ARGS;
    if (cap < UWSGI_HEADER_SIZE)
        return UWSGI_ERR_NOSPACE;
    d[0] = modifier1;
    wr16(d + 1, (uint16_t)datasize);
    d[3] = modifier2;
    return UWSGI_HEADER_SIZE;
}

int uwsgi_parse_vars_split(const char *buf, size_t len, int max_vars, char *keys, char *vals,
                           size_t cap, uint32_t *lens) {
    const unsigned char *p = (const unsigned char *)buf;
    char *k = keys, *v = vals;
    size_t pos = 0;
    int n = 0;
    if (max_vars < 0 || (len > 0 && (buf == NULL || keys == NULL || vals == NULL)) ||
        lens == NULL || len > UINT32_MAX)
        return UWSGI_ERR_ARGS;
    if (cap < len)
        return UWSGI_ERR_NOSPACE;
    while (pos < len) {
        size_t klen, vlen, koff, voff;
        int err = next_var(p, len, &pos, &koff, &klen, &voff, &vlen);
        if (err)
            return err;
        if (n >= max_vars)
            return UWSGI_ERR_TOO_MANY;
        /* Neither output outruns cap: each var adds klen + 1 (vlen + 1) of its 4 + klen + vlen. */
        if (n > 0) {
            *k++ = '\0';
            *v++ = '\0';
        }
        memcpy(k, buf + koff, klen);
        k += klen;
        memcpy(v, buf + voff, vlen);
        v += vlen;
        n++;
    }
    lens[0] = (uint32_t)(k - keys);
    lens[1] = (uint32_t)(v - vals);
    return n;
}
