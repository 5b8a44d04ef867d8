/* trainer.json (ckpt_read_state, as sigma-pretrain --resume reads it),
 * against the limits of the run that tests/fuzz/corpus/fuzz_trainer's
 * seeds come from: the tiny model, 4 x 32 tokens a step, 1 group. */
#include "common.h"
#include "base/base.h"
#include "train/ckpt.h"

#include <stdlib.h>

static void read_state(void *arg)
{
    (void)arg;
    static float bias[2];
    TrainerState st = {.expert_bias = bias};
    StateLimits lim = {.tokens_per_step = 128, .seqs_per_step = 4, .n_sequences = 1000, .n_groups = 1, .bias_rate = 1e-3,
                       .n_bias = 2};
    ckpt_read_state(fz_dir(), &st, &lim);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    free(fz_file("trainer.json", data, size));
    fz_run(read_state, NULL);
    return 0;
}
