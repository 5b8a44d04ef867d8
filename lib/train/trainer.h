/* The training run behind sigma-pretrain and sigma-sft: options, and
 * run_training(). The two differ only in where the data and the first
 * weights come from: a shard set and a fresh model, or chat JSON Lines and
 * a checkpoint (--init); everything else is one code path. */
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
    int nproc;                 /* --dry-run: plan each rank's memory for this many processes */
    int ep;                    /* expert parallelism: ranks that share each layer's experts (1: every rank holds all) */
    const char *device;        /* "cpu", "cuda" or "auto" */
    int recompute;             /* GPU: recompute the expert intermediates in backward */
    /* fine-tuning (sigma-sft): the data is chat JSON Lines (train/chat_data.h) */
    const char *tool;          /* the command: checkpoints' created_by */
    int sft;
    const char *tokenizer;     /* the model's tokenizer file */
    const char *init;          /* the checkpoint fine-tuning starts from */
    const char *val_data;      /* held-out conversations, or */
    double val_fraction;       /* the share of --data held out */
    double epochs;             /* passes over the data when --steps is not given */
    const char *train_on;      /* "assistant" or "all" */
    const char *long_rows;     /* conversations longer than a row: "cut" or "drop" */
    int pack;                  /* several conversations a row */
    int skip_bad;              /* skip bad lines (counted) instead of stopping */
    int add_chat_tokens;       /* grow the vocabulary by <|im_start|> and <|im_end|> */
    /* the long names of the options the command line gave: --resume takes
     * every other setting from the checkpoint */
    const char *given[64];
    int n_given;
} TrainOptions;

void train_options_default(TrainOptions *o);
/* A fine-tune's defaults (sigma-sft(1) says why): a tenth of pretraining's
 * learning rate on a cosine, no weight decay, --epochs 3. */
void sft_options_default(TrainOptions *o);
/* Records that the command line gave --NAME. */
void train_option_given(TrainOptions *o, const char *name);
int train_option_was_given(const TrainOptions *o, const char *name);
int run_training(const TrainOptions *o);

#endif
