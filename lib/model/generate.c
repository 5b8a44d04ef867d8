/* Generation through a device's key-value cache; see generate.h. */
#include "model/generate.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

const char *finish_name(Finish f) { return f == FINISH_STOP ? "stop" : f == FINISH_LENGTH ? "length" : "none"; }

/* A row of the cache and the request it holds. */
typedef struct {
    GenRequest *r;             /* NULL: free */
    uint32_t *ctx;             /* [len] the prompt, then the tokens generated (the repetition penalty's history) */
    size_t len, cap;
    size_t start, fed;         /* the cache holds ctx[start .. fed); ctx[fed .. len) goes into the next step */
} Row;

static void push(uint32_t **v, size_t *len, size_t *cap, uint32_t id)
{
    if (*len == *cap) *v = xrealloc(*v, (*cap = 2 * *cap + 64) * sizeof(uint32_t));
    (*v)[(*len)++] = id;
}

/* The most tokens a row must hold: a prompt, and all but the last token
 * generated (the last is never fed back), within the window. */
static int cache_len(const Generator *g, const GenRequest *r, size_t n)
{
    uint64_t need = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t want = r[i].n_prompt + (r[i].max_tokens ? r[i].max_tokens - 1 : 0);
        need = want > need ? want : need;
    }
    return need < (uint64_t)g->window ? (int)need : g->window;
}

/* The newest half of the window, re-encoded from position 0: the row's
 * next step feeds them. */
static void slide(KvCache *kv, Row *w, int b)
{
    int keep = kv->max_len / 2 > 0 ? kv->max_len / 2 : 1;
    kv_clear(kv, b);
    w->start = w->fed = w->len - (size_t)keep;
    w->r->slides++;
}

static void finish(Generator *g, Row *w, Finish why)
{
    w->r->finish = why;
    if (g->on_done) g->on_done(g->ctx, w->r);
    w->r = NULL;
}

/* Row b takes request r; 0 when r needs no step (max_tokens 0). */
static int start_row(Generator *g, KvCache *kv, Row *w, int b, GenRequest *r)
{
    r->n_out = 0;
    r->finish = FINISH_NONE;
    r->stop_id = -1;
    r->window_full = 0;
    r->slides = 0;
    w->r = r;
    if (r->max_tokens == 0) {
        finish(g, w, FINISH_LENGTH);
        return 0;
    }
    w->len = 0;
    for (size_t i = 0; i < r->n_prompt; i++) push(&w->ctx, &w->len, &w->cap, r->prompt[i]);
    kv_clear(kv, b);
    w->start = w->fed = 0;
    if (w->len > (size_t)kv->max_len) slide(kv, w, b);   /* only with g->slide: generate_run checked */
    return 1;
}

/* The token chosen for row b; 1 when it finished the row. */
static int add_token(Generator *g, KvCache *kv, Row *w, int b, uint32_t id)
{
    GenRequest *r = w->r;
    for (int i = 0; i < g->n_stop_ids; i++)
        if (id == g->stop_ids[i]) {
            r->stop_id = id;
            finish(g, w, FINISH_STOP);
            return 1;
        }
    push(&r->out, &r->n_out, &r->cap, id);
    push(&w->ctx, &w->len, &w->cap, id);
    if (g->on_token && g->on_token(g->ctx, r, id)) { finish(g, w, FINISH_STOP); return 1; }
    if (r->n_out >= r->max_tokens) { finish(g, w, FINISH_LENGTH); return 1; }
    /* the cache holds what the window does, or all a row can need when that is less */
    if (w->len - w->start > (size_t)kv->max_len) {
        if (!g->slide) {
            r->window_full = 1;
            finish(g, w, FINISH_LENGTH);
            return 1;
        }
        slide(kv, w, b);
    }
    return 0;
}

/* n bytes in KiB, MiB or GiB, for a message */
static double in_units(size_t n, const char **unit)
{
    *unit = n < (1u << 20) ? "KiB" : n < (1u << 30) ? "MiB" : "GiB";
    return (double)n / (n < (1u << 20) ? 1024.0 : n < (1u << 30) ? 1048576.0 : 1073741824.0);
}

void generate_run(Generator *g, GenRequest *r, size_t n)
{
    if (!n) return;
    const int V = g->dev->host->cfg.vocab_size, rows = (size_t)g->rows < n ? g->rows : (int)n;
    const int max_step = g->max_step > rows ? g->max_step : rows;
    for (size_t i = 0; i < n; i++) {
        if (!r[i].n_prompt) BUG("request %zu has an empty prompt", i);
        if (!g->slide && r[i].n_prompt > (size_t)g->window) BUG("request %zu: a prompt longer than the window", i);
    }
    KvCache *kv = device_kv_open(g->dev, rows, cache_len(g, r, n), max_step, sg_verbose);
    g->cache_bytes = kv->bytes;
    const char *unit;
    double mem = in_units(kv->bytes, &unit);
    info("key-value cache: %d rows x %d tokens x %zu bytes = %.1f %s", rows, kv->max_len, kv->bytes / ((size_t)rows * kv->max_len), mem,
         unit);
    Row *row = xcalloc((size_t)rows, sizeof *row);
    Sampler *smp = xcalloc((size_t)rows, sizeof *smp);
    for (int b = 0; b < rows; b++) sampler_init(&smp[b], V);
    uint32_t *tokens = xmalloc((size_t)max_step * sizeof *tokens);
    int *rid = xmalloc((size_t)max_step * sizeof *rid), *group_row = xmalloc((size_t)rows * sizeof *group_row);
    size_t next = 0;
    int active = 0;
    for (;;) {
        for (int b = 0; b < rows && next < n; b++)
            if (!row[b].r) active += start_row(g, kv, &row[b], b, &r[next++]);
        if (!active && next == n) break;
        if (!active) continue;
        /* every row's tokens not yet in the cache, as many as fit, a row's together */
        int nt = 0, groups = 0, prefill = 0;
        for (int b = 0; b < rows && nt < max_step; b++) {
            Row *w = &row[b];
            if (!w->r) continue;
            size_t take = w->len - w->fed;
            prefill |= take > 1;
            if (take > (size_t)(max_step - nt)) take = (size_t)(max_step - nt);
            for (size_t i = 0; i < take; i++) {
                tokens[nt] = w->ctx[w->fed + i];
                rid[nt++] = b;
            }
            w->fed += take;
            group_row[groups++] = b;
        }
        double t0 = now_seconds();
        const float *logits = device_step(g->dev, kv, tokens, rid, nt, g->routing);
        double dt = now_seconds() - t0;
        if (prefill) { g->prefill_tokens += (uint64_t)nt; g->prefill_s += dt; }
        else { g->decode_tokens += (uint64_t)nt; g->decode_s += dt; g->decode_steps++; }
        for (int i = 0; i < groups; i++) {
            int b = group_row[i];
            Row *w = &row[b];
            if (w->fed < w->len) continue;   /* more of its prompt to come */
            uint32_t id = sample_next(&smp[b], logits + (size_t)i * V, &w->r->sample, w->ctx, w->len, &w->r->rng);
            active -= add_token(g, kv, w, b, id);
        }
    }
    for (int b = 0; b < rows; b++) {
        sampler_free(&smp[b]);
        free(row[b].ctx);
    }
    free(smp);
    free(row);
    free(tokens);
    free(rid);
    free(group_row);
    device_kv_close(g->dev, kv);
}

void generate_free_request(GenRequest *r)
{
    free(r->out);
    r->out = NULL;
    r->n_out = r->cap = 0;
}
