/* The CPU model gives the same bits whatever the number of threads: every
 * parallel loop splits its work into blocks of fixed size and sums in a
 * fixed order (a split by thread count once changed the router's gradient
 * between one thread and two). Real text as byte tokens, random weights,
 * top-2 and top-1 layers, a loss mask, the top-1 LBL and the z-loss. */
#include "../tap.h"
#include "base/base.h"
#include "model/model.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void run(Model *m, const uint32_t *in, const uint32_t *tg, const float *mask, int B, int T, int threads, Losses *l)
{
    BalanceOptions bo = {.kind = BALANCE_TOP1_LBL, .coef = 0.05f, .tau = 0.1f, .z_coef = 0.01f};
    omp_set_num_threads(threads);
    model_zero_grads(m);
    *l = model_forward(m, in, tg, mask, B, T, &bo);
    model_backward(m, 1.0f);
}

int main(void)
{
    sg_init("test_model_threads");
    const char *root = getenv("SIGMA_ROOT");
    char *path = xasprintf("%s/README.md", root ? root : ".");
    size_t len;
    char *text = read_file(path, &len);
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
