/* model_bench PRESET VOCAB B T STEPS: forward + backward tokens/s of the CPU
 * model at one micro-batch size, for bench/model.sh. Random weights, random
 * tokens (speed does not depend on the values), balance lbl. */
#include "base/base.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc != 6) usage_error("usage: model_bench PRESET VOCAB B T STEPS");
    Config c;
    if (config_preset(&c, argv[1], (int)parse_u64("VOCAB", argv[2], 1, 1u << 24))) usage_error("unknown preset %s", argv[1]);
    int B = (int)parse_u64("B", argv[3], 1, 4096), T = (int)parse_u64("T", argv[4], 1, 1 << 16);
    int steps = (int)parse_u64("STEPS", argv[5], 1, 100000);
    Model m;
    model_init(&m, &c, B, T);
    model_init_params(&m, 1, 0.02f);
    uint32_t *in = xmalloc((size_t)B * T * sizeof(uint32_t)), *tg = xmalloc((size_t)B * T * sizeof(uint32_t));
    uint64_t s = 1;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        in[i] = (uint32_t)(s >> 33) % (uint32_t)c.vocab_size;
        tg[i] = (uint32_t)(s >> 13) % (uint32_t)c.vocab_size;
    }
    BalanceOptions bo = {.kind = BALANCE_LBL, .coef = 1e-3f};
    model_forward(&m, in, tg, NULL, NULL, B, T, &bo);   /* warm up */
    model_backward(&m, 1.0f, 1.0f);
    double t0 = now_seconds();
    for (int i = 0; i < steps; i++) {
        model_zero_grads(&m);
        model_forward(&m, in, tg, NULL, NULL, B, T, &bo);
        model_backward(&m, 1.0f, 1.0f);
    }
    double dt = (now_seconds() - t0) / steps;
    printf("%.1f\n", (double)B * T / dt);
    model_free(&m);
    free(in);
    free(tg);
    return 0;
}
