/* kv_logits CKPT N ID...: greedy decoding of N tokens after the given ids
 * through the key-value cache (model_step on the CPU), writing the logits
 * that chose each token (N x V floats, little-endian f32) on stdout, for
 * tests/interop/run.py to compare with transformers' generate. */
#include "base/base.h"
#include "model/kvcache.h"
#include "model/model.h"
#include "train/ckpt.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc < 4) usage_error("usage: kv_logits CKPT N ID...");
    int n = (int)parse_u64("N", argv[2], 1, 1 << 20), P = argc - 3;
    Model m;
    BalanceOptions routing = {.kind = ckpt_load_model(&m, argv[1], 1, 1, NULL) ? BALANCE_BIAS : BALANCE_NONE};
    uint32_t *ids = xmalloc((size_t)(P + n) * sizeof(uint32_t));
    int *rows = xcalloc((size_t)P, sizeof(int));
    for (int i = 0; i < P; i++) ids[i] = (uint32_t)parse_u64("ID", argv[3 + i], 0, UINT32_MAX);
    const int V = m.cfg.vocab_size;
    KvCache *kv = model_kv_open(&m, 1, P + n, P);
    const float *logits = model_step(&m, kv, ids, rows, P, &routing);
    for (int t = 0; t < n; t++) {
        xfwrite(logits, (size_t)V * sizeof(float), stdout, "<stdout>");
        int best = 0;
        for (int v = 1; v < V; v++) best = logits[v] > logits[best] ? v : best;
        ids[P + t] = (uint32_t)best;
        if (t + 1 < n) logits = model_step(&m, kv, &ids[P + t], rows, 1, &routing);
    }
    xfflush(stdout, "<stdout>");
    model_kv_free(kv);
    free(ids);
    free(rows);
    model_free(&m);
    return 0;
}
