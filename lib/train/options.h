/* The options sigma-pretrain and sigma-sft share (data, output, batch,
 * optimizer, sparsity and balance, evaluation, checkpoints, device), parsed
 * and described once: a tool's own options go before them in its table. */
#ifndef SIGMA_TRAIN_OPTIONS_H
#define SIGMA_TRAIN_OPTIONS_H

#include <getopt.h>
#include <stdio.h>

#include "train/trainer.h"

/* Values of the shared long options that have no short letter; a tool's
 * own start at TRAIN_OPT_END. */
enum {
    TRAIN_OPT_RESUME = 256, TRAIN_OPT_METRICS, TRAIN_OPT_STEPS, TRAIN_OPT_BATCH_TOKENS, TRAIN_OPT_MICRO_BATCH,
    TRAIN_OPT_SEQ_LEN, TRAIN_OPT_SEED, TRAIN_OPT_LR, TRAIN_OPT_MIN_LR, TRAIN_OPT_WARMUP, TRAIN_OPT_SCHEDULE,
    TRAIN_OPT_DECAY_FRACTION, TRAIN_OPT_WEIGHT_DECAY, TRAIN_OPT_BETA1, TRAIN_OPT_BETA2, TRAIN_OPT_EPS, TRAIN_OPT_CLIP,
    TRAIN_OPT_TOPK, TRAIN_OPT_BALANCE, TRAIN_OPT_BALANCE_COEF, TRAIN_OPT_BALANCE_TAU, TRAIN_OPT_Z_LOSS, TRAIN_OPT_BIAS_RATE,
    TRAIN_OPT_EVAL_EVERY, TRAIN_OPT_EVAL_BATCHES, TRAIN_OPT_SAVE_EVERY, TRAIN_OPT_KEEP, TRAIN_OPT_MAX_SKIPS,
    TRAIN_OPT_SPIKE_Z, TRAIN_OPT_DEVICE, TRAIN_OPT_RECOMPUTE, TRAIN_OPT_DRY_RUN, TRAIN_OPT_NPROC, TRAIN_OPT_EP, TRAIN_OPT_END
};

/* own[] (ended by a zero entry) followed by the shared options and the
 * common ones (cli.h); free() the result. */
struct option *train_longopts(const struct option *own);
/* Sets the option c (its argument arg) when it is a shared one and returns
 * 1; returns 0 for any other. Records that it was given (--resume). */
int train_parse_option(TrainOptions *o, int c, const char *arg, const struct option *longopts);
/* The shared options' help, their defaults from d. */
void train_options_help(FILE *out, const TrainOptions *d);

#endif
