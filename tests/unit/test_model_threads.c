/* The CPU model gives the same bits whatever the number of threads: every
 * parallel loop splits its work into blocks of fixed size and sums in a
 * fixed order (a split by thread count once changed the router's gradient
 * between one thread and two). Real text as byte tokens, random weights,
 * top-2 and top-1 layers, a loss mask, the top-1 LBL and the z-loss. And
 * forced_sel, with which the GPU test replays the GPU's routing on the CPU. */
#include "../tap.h"
#include "base/base.h"
#include "model/model.h"

#include "base/threads.h"
#include <stdlib.h>
#include <string.h>

static void run(Model *m, const uint32_t *in, const uint32_t *tg, const float *mask, int B, int T, int threads, Losses *l)
{
    BalanceOptions bo = {.kind = BALANCE_TOP1_LBL, .coef = 0.05f, .tau = 0.1f, .z_coef = 0.01f};
    omp_set_num_threads(threads);
    model_zero_grads(m);
    *l = model_forward(m, in, tg, mask, NULL, B, T, &bo);
    model_backward(m, 1.0f, 1.0f);
}

int main(void)
{
    sg_init("test_model_threads");
    const char *root = getenv("SIGMA_ROOT");
    char *path = xasprintf("%s/README.md", root ? root : ".");
    size_t len;
    char *text = read_file(path, SIZE_MAX, &len);
    Config c;
    config_preset(&c, "micro", 512);
    c.top_k[0] = 2;
    const int B = 3, T = 96, N = B * T;
    if (len < (size_t)N + 1) BUG("%s is too short", path);
    uint32_t *in = xmalloc(N * sizeof(uint32_t)), *tg = xmalloc(N * sizeof(uint32_t));
    float *mask = xmalloc(N * sizeof(float));
    for (int n = 0; n < N; n++) {
        in[n] = (unsigned char)text[n];
        tg[n] = (unsigned char)text[n + 1];
        mask[n] = text[n] != ' ';
    }
    Model m;
    model_init(&m, &c, B, T);
    model_init_params(&m, 11, 0.02f);
    Losses l1, l;
    run(&m, in, tg, mask, B, T, 1, &l1);
    float *g1 = xmalloc(m.n_params * sizeof(float)), *z1 = xmalloc((size_t)N * c.vocab_size * sizeof(float));
    memcpy(g1, m.grads, m.n_params * sizeof(float));
    memcpy(z1, model_logits(&m), (size_t)N * c.vocab_size * sizeof(float));
    for (int threads = 2; threads <= 4; threads++) {
        run(&m, in, tg, mask, B, T, threads, &l);
        ok(!memcmp(&l, &l1, sizeof l) && !memcmp(z1, model_logits(&m), (size_t)N * c.vocab_size * sizeof(float)) &&
               !memcmp(g1, m.grads, m.n_params * sizeof(float)),
           "%d threads: the same losses, logits and gradients as one thread, bit for bit", threads);
    }

    /* forced_sel, the tests' replay of another device's routing: the model's
     * own routing replayed gives the same bits; another one is followed */
    const int L = c.n_layers, E = c.n_experts;
    int *own[MODEL_MAX_LAYERS], *moved[MODEL_MAX_LAYERS], k[MODEL_MAX_LAYERS];
    float *counts = xmalloc((size_t)L * E * sizeof(float));
    memcpy(counts, m.counts, (size_t)L * E * sizeof(float));
    for (int j = 0; j < L; j++) {
        const int *sel = model_selection(&m, j, &k[j]);
        own[j] = xmalloc((size_t)N * k[j] * sizeof(int));
        moved[j] = xmalloc((size_t)N * k[j] * sizeof(int));
        memcpy(own[j], sel, (size_t)N * k[j] * sizeof(int));
        for (int i = 0; i < N * k[j]; i++) moved[j][i] = (own[j][i] + 1) % E;
        m.forced_sel[j] = own[j];
    }
    run(&m, in, tg, mask, B, T, 1, &l);
    ok(!memcmp(&l, &l1, sizeof l) && !memcmp(g1, m.grads, m.n_params * sizeof(float)),
       "the model's own routing, forced: the same losses and gradients, bit for bit");
    for (int j = 0; j < L; j++) m.forced_sel[j] = moved[j];
    run(&m, in, tg, mask, B, T, 1, &l);
    int followed = l.ce != l1.ce;
    for (int j = 0; j < L; j++) {
        int kk;
        followed &= !memcmp(model_selection(&m, j, &kk), moved[j], (size_t)N * k[j] * sizeof(int));
        for (int e = 0; e < E; e++) followed &= m.counts[j * E + (e + 1) % E] == counts[j * E + e];
    }
    ok(followed, "another routing, forced: followed (selections, counts), and the loss changes");
    for (int j = 0; j < L; j++) {
        m.forced_sel[j] = NULL;
        free(own[j]);
        free(moved[j]);
    }
    free(counts);
    model_free(&m);
    free(g1);
    free(z1);
    free(in);
    free(tg);
    free(mask);
    free(text);
    free(path);
    return tap_done();
}
