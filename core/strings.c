/* Small string helpers of the core API. */
#include <string.h>
#include "../uwsgi.h"

int uwsgi_startswith_n(const char *s, size_t slen, const char *prefix, size_t plen) {
    if (s == NULL || prefix == NULL || plen > slen)
        return 0;
    return memcmp(s, prefix, plen) == 0;
}

int uwsgi_endswith_n(const char *s, size_t slen, const char *suffix, size_t sufflen) {
    if (s == NULL || suffix == NULL || sufflen > slen)
        return 0;
    return memcmp(s + slen - sufflen, suffix, sufflen) == 0;
}

int uwsgi_startswith(const char *s, const char *prefix) {
    if (s == NULL || prefix == NULL)
        return 0;
    return uwsgi_startswith_n(s, strlen(s), prefix, strlen(prefix));
}

int uwsgi_endswith(const char *s, const char *suffix) {
    if (s == NULL || suffix == NULL)
        return 0;
    return uwsgi_endswith_n(s, strlen(s), suffix, strlen(suffix));
}

int uwsgi_contains(const char *s, const char *needle) {
    if (s == NULL || needle == NULL)
        return 0;
    return strstr(s, needle) != NULL;
}

int uwsgi_strncaseeq(const char *a, size_t alen, const char *b, size_t blen) {
    size_t i;
    if (alen != blen || a == NULL || b == NULL)
        return alen == blen && alen == 0;
    for (i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x += 32;
        if (y >= 'A' && y <= 'Z') y += 32;
        if (x != y)
            return 0;
    }
    return 1;
}
