/* model_logits CKPT ID...: the logits of the last position (V floats,
 * little-endian f32) of the model of a checkpoint over the given ids, on
 * stdout, for tests/interop.py to compare with transformers. */
#include "base/base.h"
#include "model/model.h"
#include "train/ckpt.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    sg_init(argv[0]);
    if (argc < 3) usage_error("usage: model_logits CKPT ID...");
    int T = argc - 2;
    Model m;
    ckpt_load_model(&m, argv[1], 1, T, NULL);
    uint32_t *ids = xmalloc((size_t)T * sizeof(uint32_t));
    for (int i = 0; i < T; i++) ids[i] = (uint32_t)parse_u64("ID", argv[2 + i], 0, UINT32_MAX);
    BalanceOptions none = {.kind = BALANCE_NONE};
    model_forward(&m, ids, NULL, NULL, NULL, 1, T, &none);
    xfwrite(model_logits(&m), (size_t)T * m.cfg.vocab_size * sizeof(float), stdout, "<stdout>");
    xfflush(stdout, "<stdout>");
    free(ids);
    model_free(&m);
    return 0;
}
