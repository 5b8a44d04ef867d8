/* Progress lines, command-line numbers, hashing. */
#include "base/base.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void progress_init(Progress *p, double interval)
{
    p->start = p->last = now_seconds();
    p->interval = interval > 0 ? interval : 10.0;
    p->tty = isatty(STDERR_FILENO);
    p->drawn = 0;
}

static void progress_draw(Progress *p, int final, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    if (p->tty) fprintf(stderr, "\r\033[K%s: %s%s", sg_prog, line, final ? "\n" : "");
    else fprintf(stderr, "%s: %s\n", sg_prog, line);
    p->drawn = !final && p->tty;
}

void progress_update(Progress *p, const char *fmt, ...)
{
    if (sg_quiet) return;
    double t = now_seconds();
    if (t - p->last < (p->tty ? 0.1 : p->interval)) return;
    p->last = t;
    va_list ap;
    va_start(ap, fmt);
    progress_draw(p, 0, fmt, ap);
    va_end(ap);
}

void progress_done(Progress *p, const char *fmt, ...)
{
    if (sg_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    progress_draw(p, 1, fmt, ap);
    va_end(ap);
}

uint64_t parse_u64(const char *opt, const char *arg, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    if (!arg || !*arg || *arg == '-') usage_error("%s: expected a non-negative integer, got '%s'", opt, arg ? arg : "");
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end) usage_error("%s: expected a non-negative integer, got '%s'", opt, arg);
    if (v < min || v > max) usage_error("%s: %llu is out of range [%llu, %llu]", opt, v, (unsigned long long)min, (unsigned long long)max);
    return v;
}

double parse_double(const char *opt, const char *arg, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !isfinite(v)) usage_error("%s: expected a number, got '%s'", opt, arg);
    if (v < min || v > max) usage_error("%s: %g is out of range [%g, %g]", opt, v, min, max);
    return v;
}

uint64_t parse_count(const char *opt, const char *arg, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || !isfinite(v) || v < 0) usage_error("%s: expected a count, got '%s'", opt, arg);
    switch (*end) {
    case 'k': case 'K': v *= 1e3; end++; break;
    case 'm': case 'M': v *= 1e6; end++; break;
    case 'g': case 'G': v *= 1e9; end++; break;
    default: break;
    }
    if (*end || v != floor(v) || v > 1.8e19) usage_error("%s: expected a whole count, got '%s'", opt, arg);
    uint64_t n = (uint64_t)v;
    if (n < min || n > max) usage_error("%s: %s is out of range [%llu, %llu]", opt, arg, (unsigned long long)min, (unsigned long long)max);
    return n;
}

uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t hash64(const void *data, size_t n, uint64_t seed)
{
    return XXH3_64bits_withSeed(data, n, seed);
}

uint64_t file_hash64(const char *path)
{
    enum { BLOCK = 1 << 20 };
    FILE *f = xfopen(path, "rb");
    XXH3_state_t *st = XXH3_createState();
    if (!st || XXH3_64bits_reset(st) != XXH_OK) die("out of memory hashing %s", path);
    char *buf = xmalloc(BLOCK);
    size_t n;
    while ((n = xfread_some(buf, BLOCK, f, path)) > 0) XXH3_64bits_update(st, buf, n);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    free(buf);
    xfclose(f, path);
    return h;
}

void hex64(char out[17], uint64_t h)
{
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int parse_hex64(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != 16) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

void rate_mark(RateWindow *r, double now) { r->at[r->n++ % (RATE_WINDOW + 1)] = now; }

double rate_per_second(const RateWindow *r, double units_per_interval)
{
    if (r->n < 2) return 0;
    uint64_t k = r->n - 1 < RATE_WINDOW ? r->n - 1 : RATE_WINDOW;
    double span = r->at[(r->n - 1) % (RATE_WINDOW + 1)] - r->at[(r->n - 1 - k) % (RATE_WINDOW + 1)];
    return span > 0 ? (double)k * units_per_interval / span : 0;
}

int mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}

uint64_t mul_or_die(uint64_t a, uint64_t b, const char *what)
{
    uint64_t r;
    if (!mul_u64(a, b, &r)) die("%s: %llu x %llu is too large", what, (unsigned long long)a, (unsigned long long)b);
    return r;
}

void mean_stderr(const double *x, size_t n, double *mean, double *se)
{
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = n > 1 ? sqrt(v / (double)(n - 1) / (double)n) : NAN;
}
