/* The key-value cache (model/kvcache.h) against the forward without one:
 * after every step, each row's logits equal those of model_forward over
 * the row's whole sequence at its last position, to 1e-5 relative. Rows of
 * different lengths prefilled in one step, a prompt prefilled in two steps,
 * decode steps of one token a row with some rows sitting out, a row emptied
 * and refilled (its cache rewritten from position 0); grouped-query
 * attention (4 query heads on 2 KV heads), a top-2 layer beside a top-1
 * one, and routing by the aux-loss-free bias. */
#include "../tap.h"
#include "base/base.h"
#include "base/threads.h"
#include "model/kvcache.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ROWS = 3, MAX_LEN = 48 };

typedef struct {
    uint32_t ids[MAX_LEN];
    int len;
} Seq;

/* max |a - b| / max |b| over n */
static double rel_max(const float *a, const float *b, int n)
{
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

/* The worst relative error of the step's logits (one row each of the
 * groups, rows g_row[]) against the forward over each row's sequence. */
static double check_groups(Model *m, const float *logits, const Seq *seq, const int *g_row, int groups, const BalanceOptions *bo)
{
    const int V = m->cfg.vocab_size;
    float *step = xmalloc((size_t)groups * V * sizeof(float));
    memcpy(step, logits, (size_t)groups * V * sizeof(float));
    double worst = 0;
    for (int g = 0; g < groups; g++) {
        const Seq *s = &seq[g_row[g]];
        model_forward(m, s->ids, NULL, NULL, NULL, 1, s->len, bo);
        worst = fmax(worst, rel_max(step + (size_t)g * V, model_logits(m) + (size_t)(s->len - 1) * V, V));
    }
    free(step);
    return worst;
}

/* One step of the given (row, count) groups, the tokens drawn from rng and
 * appended to the sequences; returns the worst error. */
static double step_and_check(Model *m, KvCache *kv, Seq *seq, const int *g_row, const int *g_n, int groups, uint64_t *rng,
                             const BalanceOptions *bo)
{
    uint32_t tokens[ROWS * MAX_LEN];
    int rows[ROWS * MAX_LEN], n = 0;
    for (int g = 0; g < groups; g++)
        for (int i = 0; i < g_n[g]; i++) {
            Seq *s = &seq[g_row[g]];
            tokens[n] = s->ids[s->len++] = (uint32_t)(splitmix64(rng) % (uint64_t)m->cfg.vocab_size);
            rows[n++] = g_row[g];
        }
    const float *logits = model_step(m, kv, tokens, rows, n, bo);
    return check_groups(m, logits, seq, g_row, groups, bo);
}

static void run(const char *name, Config *c, int bias, int threads)
{
    omp_set_num_threads(threads);
    Model m;
    model_init(&m, c, 1, MAX_LEN);
    model_init_params(&m, 11, 0.3f);
    BalanceOptions bo = {.kind = bias ? BALANCE_BIAS : BALANCE_NONE};
    uint64_t rng = 7;
    if (bias)   /* large enough to change choices */
        for (int i = 0; i < c->n_layers * c->n_experts; i++) m.expert_bias[i] = (float)((splitmix64(&rng) >> 40) * 0x1.0p-24 * 0.2);
    KvCache *kv = model_kv_open(&m, ROWS, MAX_LEN, 64);
    Seq seq[ROWS] = {{{0}, 0}};
    double worst;

    /* prefill: three prompts of 1, 6 and 17 tokens in one step */
    int r3[] = {0, 1, 2}, n3[] = {1, 6, 17};
    worst = step_and_check(&m, kv, seq, r3, n3, 3, &rng, &bo);
    ok(worst < 1e-5, "%s: a prefill of rows of 1, 6 and 17 tokens in one step (relative error %.2g)", name, worst);
    ok(kv->len[0] == 1 && kv->len[1] == 6 && kv->len[2] == 17, "%s: the rows hold 1, 6 and 17 tokens", name);

    /* decode: one token a row, 12 steps, row 1 sitting out every third */
    worst = 0;
    for (int i = 0; i < 12; i++) {
        int rr[] = {0, 2}, nn[] = {1, 1}, all[] = {1, 1, 1};
        worst = fmax(worst, i % 3 == 2 ? step_and_check(&m, kv, seq, rr, nn, 2, &rng, &bo)
                                       : step_and_check(&m, kv, seq, r3, all, 3, &rng, &bo));
    }
    ok(worst < 1e-5, "%s: 12 decode steps, one token a row, a row sitting out (relative error %.2g)", name, worst);

    /* a row emptied and prefilled again in two steps, the others decoding beside it */
    kv_clear(kv, 1);
    seq[1].len = 0;
    int ra[] = {1, 0}, na[] = {9, 1}, rb[] = {0, 1, 2}, nb[] = {1, 5, 1};
    worst = step_and_check(&m, kv, seq, ra, na, 2, &rng, &bo);
    worst = fmax(worst, step_and_check(&m, kv, seq, rb, nb, 3, &rng, &bo));
    ok(worst < 1e-5, "%s: a row emptied and prefilled again over two steps, beside decoding rows (relative error %.2g)", name, worst);

    /* up to the end of the cache */
    worst = 0;
    while (seq[2].len < MAX_LEN) {
        int r[] = {2}, n1[] = {1};
        worst = fmax(worst, step_and_check(&m, kv, seq, r, n1, 1, &rng, &bo));
    }
    ok(worst < 1e-5 && kv->len[2] == MAX_LEN, "%s: one row decoded to the cache's %d tokens (relative error %.2g)", name, MAX_LEN, worst);
    model_kv_free(kv);
    model_free(&m);
}

int main(void)
{
    sg_init("test_kvcache");
    Config c;
    config_preset(&c, "test", 300);   /* 4 query heads, 2 KV heads, 8 experts */
    c.top_k[0] = 2;
    run("top-2 and top-1 layers", &c, 0, 1);
    run("two threads", &c, 0, 2);
    c.top_k[0] = 1;
    run("routing by the expert bias", &c, 1, 1);
    config_preset(&c, "test", 300);
    c.n_kv_heads = 4;
    run("as many KV heads as query heads", &c, 0, 1);
    return tap_done();
}
