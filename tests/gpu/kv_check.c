/* The CUDA core's key-value cache (gpu_model_step) against the CPU's
 * (model_step): the same weights, the same steps through both, the logits
 * of every step compared (relative L2 error, within gpu_check's bound for
 * logits: bf16 weights, activations and cache). Rows of different lengths
 * prefilled in one step, decode steps of one token a row with a row sitting
 * out, a row emptied and prefilled again beside a decoding row, one row
 * decoded to the end of its cache; top-2 beside top-1, routing by the
 * expert bias, GQA and as many KV heads as query heads, head sizes 8 and
 * 64. And determinism: the same steps through a second cache give the same
 * bits. Needs a GPU; built with -DSIGMA_EMU and linked with the CUDA core
 * built for the CPU emulation (tests/emu/cuda_emu.h), it runs in make test.
 * TAP on stdout. */
#include "../tap.h"
#include "../compare.h"
#include "base/base.h"
#include "cuda/gpu_model.h"
#include "model/kvcache.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-2   /* relative L2 error of a step's logits: bf16 weights, activations and cache */

enum { ROWS = 3, MAX_LEN = 40, STEPS = 25 };   /* row 2: 17 + 12 + 1 + 10 decode steps = 40 */

typedef struct {
    const char *name;
    int k0, bias, kv_heads, head_dim;
} Case;

/* Step i's groups: (row, tokens) pairs, as test_kvcache's schedule. */
static int schedule(int i, int *g_row, int *g_n)
{
    static const int pre_r[] = {0, 1, 2}, pre_n[] = {1, 6, 17};
    if (i == 0) { memcpy(g_row, pre_r, sizeof pre_r); memcpy(g_n, pre_n, sizeof pre_n); return 3; }
    if (i == 13) { g_row[0] = 1; g_n[0] = 9; g_row[1] = 0; g_n[1] = 1; return 2; }   /* row 1 emptied before: a prefill beside a decode */
    if (i == 14) { g_row[0] = 0; g_n[0] = 1; g_row[1] = 1; g_n[1] = 5; g_row[2] = 2; g_n[2] = 1; return 3; }
    if (i > 14) { g_row[0] = 2; g_n[0] = 1; return 1; }
    int n = 0;
    for (int r = 0; r < ROWS; r++)
        if (!(i % 3 == 2 && r == 1)) { g_row[n] = r; g_n[n++] = 1; }
    return n;
}

static void run(const Case *cs)
{
    Config c;
    config_preset(&c, "test", 300);
    c.top_k[0] = cs->k0;
    if (cs->kv_heads) c.n_kv_heads = cs->kv_heads;
    if (cs->head_dim) c.head_dim = cs->head_dim;
    const int V = c.vocab_size, L = c.n_layers, E = c.n_experts;
    Model m;
    model_init(&m, &c, 1, 1);
    model_init_params(&m, 17, 0.02f);
    uint64_t rng = 23;
    for (int i = 0; i < L * E; i++) m.expert_bias[i] = cs->bias ? (float)((splitmix64(&rng) >> 40) * 0x1.0p-24 * 0.2) : 0.0f;
    BalanceOptions bo = {.kind = cs->bias ? BALANCE_BIAS : BALANCE_NONE};
    GpuModel *g = gpu_model_create(&m, &c, 1, 1, NULL, 0);
    gpu_model_set_params(g, m.params);
    KvCache *cpu = model_kv_open(&m, ROWS, MAX_LEN, 32), gpu[2];
    for (int r = 0; r < 2; r++) {
        kv_cache_init(&gpu[r], &c, ROWS, MAX_LEN, 32);
        gpu_model_kv_open(g, &gpu[r], 0);
    }
    double worst = 0;
    int same_bits = 1, finite = 1;
    float *ref = xmalloc((size_t)ROWS * V * sizeof(float));
    for (int i = 0; i < STEPS; i++) {
        int g_row[ROWS], g_n[ROWS], rows[64], n = 0, groups = schedule(i, g_row, g_n);
        uint32_t tokens[64];
        if (i == 13) kv_clear(cpu, 1), kv_clear(&gpu[0], 1), kv_clear(&gpu[1], 1);
        for (int j = 0; j < groups; j++)
            for (int t = 0; t < g_n[j]; t++) {
                tokens[n] = (uint32_t)(splitmix64(&rng) % (uint64_t)V);
                rows[n++] = g_row[j];
            }
        memcpy(ref, model_step(&m, cpu, tokens, rows, n, &bo), (size_t)groups * V * sizeof(float));
        const float *a = gpu_model_step(g, &gpu[0], &c, tokens, rows, n, &bo, m.expert_bias);
        float *first = xmalloc((size_t)groups * V * sizeof(float));
        memcpy(first, a, (size_t)groups * V * sizeof(float));
        const float *b = gpu_model_step(g, &gpu[1], &c, tokens, rows, n, &bo, m.expert_bias);
        same_bits &= !memcmp(first, b, (size_t)groups * V * sizeof(float));
        for (size_t j = 0; j < (size_t)groups * V; j++) finite &= isfinite(first[j]);
        double e = rel_l2_err(first, ref, (size_t)groups * V);
        if (e > worst) worst = e;
        free(first);
    }
    ok(finite && worst < TOL, "%s: %d steps' logits match the CPU's cache (worst relative error %.2e)", cs->name, STEPS, worst);
    ok(same_bits, "%s: the same steps again give the same bits", cs->name);
    ok(gpu[0].len[2] == MAX_LEN, "%s: a row decoded to the cache's %d tokens", cs->name, MAX_LEN);
    for (int r = 0; r < 2; r++) {
        gpu_model_kv_free(g, &gpu[r]);
        kv_cache_free_host(&gpu[r]);
    }
    model_kv_free(cpu);
    gpu_model_free(g);
    model_free(&m);
    free(ref);
}

int main(void)
{
    sg_init("kv_check");
    static const Case cases[] = {
        {"top-2 and top-1 layers, GQA 4/2, head_dim 8", 2, 0, 0, 0},
        {"routing by the expert bias", 1, 1, 0, 0},
        {"as many KV heads as query heads, head_dim 64", 1, 0, 4, 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run(&cases[i]);
    return tap_done();
}
