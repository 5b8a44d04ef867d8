/* Learning-rate and top-k schedules; see schedule.h. */
#include "train/schedule.h"
#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

double lr_at(const LrSchedule *s, uint64_t step)
{
    if (step < s->warmup) return s->max_lr * (double)(step + 1) / (double)s->warmup;
    switch (s->kind) {
    case LR_CONSTANT:
        return s->max_lr;
    case LR_COSINE: {
        double span = s->total > s->warmup ? (double)(s->total - s->warmup) : 1.0;
        double p = fmin(1.0, (double)(step - s->warmup) / span);
        return s->min_lr + 0.5 * (s->max_lr - s->min_lr) * (1.0 + cos(M_PI * p));
    }
    case LR_WSD: {
        /* stable at max_lr, then a linear decay over the last decay_fraction of the run */
        uint64_t decay = (uint64_t)ceil(s->decay_fraction * (double)s->total);
        uint64_t start = s->total > decay ? s->total - decay : 0;
        if (start < s->warmup) start = s->warmup;
        if (step < start || s->total <= start) return s->max_lr;
        double p = fmin(1.0, (double)(step - start + 1) / (double)(s->total - start));
        return s->max_lr + (s->min_lr - s->max_lr) * p;
    }
    }
    return s->max_lr;
}

int lr_kind_parse(const char *name, LrKind *kind)
{
    if (!strcmp(name, "wsd")) *kind = LR_WSD;
    else if (!strcmp(name, "cosine")) *kind = LR_COSINE;
    else if (!strcmp(name, "constant")) *kind = LR_CONSTANT;
    else return -1;
    return 0;
}

const char *lr_kind_name(LrKind kind)
{
    return kind == LR_WSD ? "wsd" : kind == LR_COSINE ? "cosine" : "constant";
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *skip_space(const char *p)
{
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

/* One phase "STEP:LIST" from p up to ';' or the end. */
static int parse_phase(const char *p, const char *end, uint64_t *start, int *k, int n_layers, int n_experts, char *err, size_t errlen)
{
    char *q;
    p = skip_space(p);
    errno = 0;
    if (!isdigit((unsigned char)*p)) return fail(err, errlen, "expected STEP:LIST at '%.*s'", (int)(end - p), p);
    *start = strtoull(p, &q, 10);
    if (errno || *skip_space(q) != ':') return fail(err, errlen, "expected ':' after the step in '%.*s'", (int)(end - p), p);
    p = skip_space(q) + 1;
    int layer = 0, repeat = 0;
    while (p < end) {
        p = skip_space(p);
        if (p >= end) break;
        long v = strtol(p, &q, 10);
        if (q == p || q > end) return fail(err, errlen, "expected a number at '%.*s'", (int)(end - p), p);
        if (v < 1 || v > n_experts) return fail(err, errlen, "k = %ld is outside 1..%d (the number of experts)", v, n_experts);
        if (layer == n_layers) return fail(err, errlen, "more than %d values (the number of layers) at step %llu", n_layers, (unsigned long long)*start);
        k[layer++] = (int)v;
        p = skip_space(q);
        if (p + 3 <= end && !strncmp(p, "...", 3)) {
            repeat = 1;
            p = skip_space(p + 3);
            if (p < end) return fail(err, errlen, "'...' must end a list, at '%.*s'", (int)(end - p), p);
            break;
        }
        if (p < end && *p != ',') return fail(err, errlen, "expected ',' at '%.*s'", (int)(end - p), p);
        if (p < end) p++;
    }
    if (layer == 0) return fail(err, errlen, "no k values at step %llu", (unsigned long long)*start);
    if (repeat) for (; layer < n_layers; layer++) k[layer] = k[layer - 1];
    if (layer != n_layers)
        return fail(err, errlen, "%d values for %d layers at step %llu (end the list with '...' to repeat the last)", layer,
                    n_layers, (unsigned long long)*start);
    return 0;
}

int topk_parse(TopkSchedule *s, const char *spec, int n_layers, int n_experts, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->n_layers = n_layers;
    size_t cap = 1;
    for (const char *c = spec; *c; c++) cap += *c == ';';
    s->start = xcalloc(cap, sizeof(uint64_t));
    s->k = xcalloc(cap * (size_t)n_layers, sizeof(int));
    const char *p = spec;
    for (;;) {
        const char *end = strchr(p, ';');
        if (!end) end = p + strlen(p);
        if (*skip_space(p) && skip_space(p) < end) {
            uint64_t start = 0;
            if (parse_phase(p, end, &start, s->k + s->n_phases * (size_t)n_layers, n_layers, n_experts, err, errlen)) {
                topk_free(s);
                return -1;
            }
            int bad = 0;
            if (s->n_phases == 0 && start != 0)
                bad = fail(err, errlen, "the first phase must start at step 0, not %llu", (unsigned long long)start);
            else if (s->n_phases && start <= s->start[s->n_phases - 1])
                bad = fail(err, errlen, "phase steps must increase (%llu after %llu)", (unsigned long long)start,
                           (unsigned long long)s->start[s->n_phases - 1]);
            if (bad) { topk_free(s); return -1; }
            s->start[s->n_phases++] = start;
        }
        if (!*end) break;
        p = end + 1;
    }
    if (s->n_phases == 0) { topk_free(s); return fail(err, errlen, "empty top-k schedule"); }
    return 0;
}

size_t topk_phase(const TopkSchedule *s, uint64_t step)
{
    size_t i = 0;
    while (i + 1 < s->n_phases && s->start[i + 1] <= step) i++;
    return i;
}

const int *topk_at(const TopkSchedule *s, uint64_t step)
{
    return s->k + topk_phase(s, step) * (size_t)s->n_layers;
}

char *topk_format(const TopkSchedule *s)
{
    size_t cap = 64 + s->n_phases * (size_t)s->n_layers * 12, len = 0;
    char *out = xmalloc(cap);
    out[0] = 0;
    for (size_t i = 0; i < s->n_phases; i++) {
        const int *k = s->k + i * (size_t)s->n_layers;
        int last = s->n_layers - 1;   /* shortest form: stop where the rest repeats */
        while (last > 0 && k[last - 1] == k[s->n_layers - 1]) last--;
        len += (size_t)snprintf(out + len, cap - len, "%s%llu:", i ? "; " : "", (unsigned long long)s->start[i]);
        for (int l = 0; l <= last; l++) len += (size_t)snprintf(out + len, cap - len, "%s%d", l ? "," : "", k[l]);
        if (last < s->n_layers - 1 || s->n_layers > 1) len += (size_t)snprintf(out + len, cap - len, "...");
    }
    return out;
}

void topk_free(TopkSchedule *s)
{
    free(s->start);
    free(s->k);
    memset(s, 0, sizeof *s);
}
