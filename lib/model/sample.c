/* The next token: penalty, greedy or temperature, top-k, top-p, min-p and
 * a draw; and stop strings. See sample.h. */
#include "model/sample.h"
#include "base/base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

SampleOptions sample_defaults(void)
{
    return (SampleOptions){.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0, .repetition_penalty = 1};
}

const char *sample_set(SampleOptions *o, const char *name, double v, int *known)
{
    static char msg[128];
    /* the ranges transformers takes; a temperature of 0 is greedy */
    static const struct { const char *name; double lo, hi; int lo_open, integer; } r[] = {
        {"temperature", 0, 100, 0, 0}, {"top_k", 0, 1 << 30, 0, 1}, {"top_p", 0, 1, 0, 0}, {"min_p", 0, 1, 0, 0},
        {"repetition_penalty", 0, 100, 1, 0},
    };
    int i = 0, n = (int)(sizeof r / sizeof *r);
    while (i < n && strcmp(r[i].name, name)) i++;
    *known = i < n ? 0 : -1;
    if (i == n) return NULL;
    if (!isfinite(v) || (r[i].lo_open ? v <= r[i].lo : v < r[i].lo) || v > r[i].hi || (r[i].integer && v != floor(v))) {
        snprintf(msg, sizeof msg, "must be %s %s %.10g %s %.10g, got %.10g", r[i].integer ? "a whole number" : "a number",
                 r[i].lo_open ? "above" : "from", r[i].lo, r[i].lo_open ? "and at most" : "to", r[i].hi, v);
        return msg;
    }
    switch (i) {
    case 0: o->temperature = v; break;
    case 1: o->top_k = (int)v; break;
    case 2: o->top_p = v; break;
    case 3: o->min_p = v; break;
    default: o->repetition_penalty = v; break;
    }
    return NULL;
}

void sampler_init(Sampler *s, int V)
{
    s->V = V;
    s->x = xmalloc((size_t)V * sizeof(float));
    s->idx = xmalloc((size_t)V * sizeof(int));
    s->p = xmalloc((size_t)V * sizeof(double));
    s->seen = xcalloc((size_t)V, 1);
}

void sampler_free(Sampler *s)
{
    free(s->x);
    free(s->idx);
    free(s->p);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

/* Each distinct token of the history once, as transformers' gather and scatter. */
static void penalize(float *x, uint8_t *seen, const uint32_t *history, size_t n, int V, float penalty)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t t = history[i];
        if (t >= (uint32_t)V || seen[t]) continue;
        seen[t] = 1;
        x[t] = x[t] < 0 ? x[t] * penalty : x[t] / penalty;
    }
    for (size_t i = 0; i < n; i++)
        if (history[i] < (uint32_t)V) seen[history[i]] = 0;
}

/* The first of the largest (torch.argmax's tie rule). */
static int argmax(const float *x, int V)
{
    int best = 0;
    for (int i = 1; i < V; i++) best = x[i] > x[best] ? i : best;
    return best;
}

/* The k-th largest of x[V] (1 <= k < V), by a min-heap of the k largest
 * seen: heap[k] is scratch. */
static float kth_largest(const float *x, int V, int k, float *heap)
{
    for (int i = 0; i < V; i++) {
        float v = x[i];
        int at;
        if (i < k) {   /* sift up */
            for (at = i; at > 0 && heap[(at - 1) / 2] > v; at = (at - 1) / 2) heap[at] = heap[(at - 1) / 2];
        } else if (v > heap[0]) {   /* replace the root, sift down */
            at = 0;
            for (;;) {
                int c = 2 * at + 1;
                if (c >= k) break;
                if (c + 1 < k && heap[c + 1] < heap[c]) c++;
                if (heap[c] >= v) break;
                heap[at] = heap[c];
                at = c;
            }
        } else {
            continue;
        }
        heap[at] = v;
    }
    return heap[0];
}

/* Candidates by logit, largest first, the lower token first on ties. */
static int by_logit(const void *a, const void *b, void *ctx)
{
    const float *x = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    return x[i] > x[j] ? -1 : x[i] < x[j] ? 1 : (i > j) - (i < j);
}

uint32_t sample_next(Sampler *s, const float *logits, const SampleOptions *o, const uint32_t *history, size_t n_history,
                     uint64_t *rng)
{
    const int V = s->V;
    if (!sample_draws(o) && o->repetition_penalty == 1) return (uint32_t)argmax(logits, V);   /* nothing to change first */
    float *x = s->x;
    memcpy(x, logits, (size_t)V * sizeof(float));
    if (o->repetition_penalty != 1) penalize(x, s->seen, history, n_history, V, (float)o->repetition_penalty);
    if (!sample_draws(o)) return (uint32_t)argmax(x, V);
    float temp = (float)o->temperature;
    for (int i = 0; i < V; i++) x[i] /= temp;
    /* top-k: the candidates at or above the k-th largest (the heap in p's room) */
    float thr = o->top_k > 0 && o->top_k < V ? kth_largest(x, V, o->top_k, (float *)(void *)s->p) : -INFINITY;
    int n = 0;
    for (int i = 0; i < V; i++)
        if (x[i] >= thr) s->idx[n++] = i;
    if (n == 0) return (uint32_t)argmax(x, V);   /* every logit NaN or -inf: nothing to draw from */
    /* top-p needs them in order; min-p and the draw do not */
    if (o->top_p < 1) qsort_r(s->idx, (size_t)n, sizeof(int), by_logit, x);
    float mx = x[s->idx[0]];
    for (int i = 1; i < n; i++) mx = x[s->idx[i]] > mx ? x[s->idx[i]] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += s->p[i] = exp((double)x[s->idx[i]] - mx);
    if (o->top_p < 1) {   /* keep while the mass before a token is below top_p */
        double before = 0;
        int keep = 1;
        while (keep < n && (before += s->p[keep - 1]) / sum < o->top_p) keep++;
        n = keep;
    }
    if (o->min_p > 0) {   /* p / p_max = exp(x - max) */
        int m = 0;
        for (int i = 0; i < n; i++)
            if (s->p[i] >= o->min_p) { s->idx[m] = s->idx[i]; s->p[m++] = s->p[i]; }
        n = m;   /* the most likely one passes: its ratio is 1 */
    }
    sum = 0;
    for (int i = 0; i < n; i++) sum += s->p[i];
    double u = (double)(splitmix64(rng) >> 11) * 0x1.0p-53 * sum;
    for (int i = 0; i < n; i++)
        if ((u -= s->p[i]) < 0) return (uint32_t)s->idx[i];
    return (uint32_t)s->idx[n - 1];
}

long stop_find(const char *text, size_t len, size_t from, char *const *stop, size_t n)
{
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(stop[i]);
        if (!sl || sl > len) continue;
        size_t start = from + 1 > sl ? from + 1 - sl : 0;   /* an occurrence ending after `from` begins here or later */
        const char *hit = memmem(text + start, len - start, stop[i], sl);
        if (hit && (best < 0 || hit - text < best)) best = hit - text;
    }
    return best;
}
