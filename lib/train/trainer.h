/* The training run behind sigma-pretrain: options, and run_training(). */
#ifndef SIGMA_TRAINER_H
#define SIGMA_TRAINER_H

#include <stdint.h>

#include "model/balance.h"
#include "train/schedule.h"

typedef struct {
    /* model */
    const char *config;        /* a config JSON file, or */
    const char *preset;        /* a preset name */
    double init_std;
    /* data and output */
    const char *data;          /* shard set */
    const char *out;           /* run directory */
    const char *metrics;       /* JSON Lines file or NULL */
    int resume;
    /* batch */
    uint64_t steps;
    uint64_t batch_tokens;     /* per optimizer step */
    uint32_t micro_batch;      /* sequences per forward/backward */
    uint32_t seq_len;
    uint64_t seed;
    /* optimizer and schedule */
    LrSchedule lr;
    double weight_decay, beta1, beta2, eps, clip;
    /* sparsity and balance */
    const char *topk_schedule; /* NULL: the config's top-k for every step */
    BalanceKind balance;
    double balance_coef, balance_tau, z_loss, bias_rate;
    /* evaluation, checkpoints, guards */
    uint64_t eval_every, eval_batches;
    uint64_t save_every;
    unsigned keep;
    uint64_t max_skips;
    double spike_z;
    int threads;
    int dry_run;
    const char *device;        /* "cpu", "cuda" or "auto" */
    int recompute;             /* GPU: recompute the expert intermediates in backward */
    /* the long names of the options the command line gave: --resume takes
     * every other setting from the checkpoint */
    const char *given[64];
    int n_given;
} TrainOptions;

void train_options_default(TrainOptions *o);
/* Records that the command line gave --NAME. */
void train_option_given(TrainOptions *o, const char *name);
int train_option_was_given(const TrainOptions *o, const char *name);
int run_training(const TrainOptions *o);

#endif
