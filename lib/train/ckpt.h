/* A run's checkpoint directory (sigma-formats(5)): OUT/step-NNNNNNNN/ written
 * atomically, then OUT/latest replaced atomically to name it, then all but
 * the newest `keep` removed. A crash at any point leaves `latest` naming a
 * complete checkpoint. */
#ifndef SIGMA_CKPT_H
#define SIGMA_CKPT_H

#include <stdint.h>

#include "base/base.h"
#include "base/json.h"
#include "data/tokstream.h"
#include "model/model.h"

/* Before a run's first step: OUT is a directory (made when missing; a new
 * run may not take one that holds checkpoints or files named like them),
 * writable, and this process's alone (dir_lock: OUT/.lock, naming the pid
 * of a process that holds it). A resumed run needs OUT to exist. */
void ckpt_run_open(const char *out, int resume);
/* "step-00001000" (caller frees) */
char *ckpt_name(uint64_t step);
/* Start writing checkpoint `step` of run OUT (created if missing): files go
 * into atomic_dir_file(ad, NAME). */
void ckpt_begin(AtomicDir *ad, const char *out, uint64_t step);
/* Commit it, point OUT/latest at it, keep the newest `keep` (0: keep all). */
void ckpt_commit(AtomicDir *ad, const char *out, uint64_t step, unsigned keep);
/* The checkpoint directory that PATH names: PATH itself when it holds
 * config.json, else the one PATH/latest names. NULL when PATH has neither
 * (caller frees). */
char *ckpt_resolve(const char *path);

/* ---- a checkpoint's files (ckpt_model.c): every tool reads and writes them here ----
 *   config.json            {"model": the Config, "tokenizer": {"fingerprint",
 *                          "vocab_size"}, and the writer's own sections
 *                          ("training", "imported_from", "created_by")}
 *   model.safetensors      the weights, fp32
 *   optimizer.safetensors  AdamW's moments ("m.NAME", "v.NAME"); the trainer's
 *   trainer.json           the run's state and the XXH3-64 of both
 *                          safetensors files; the trainer's */

/* config.json into the checkpoint being written; `sections` (may be NULL)
 * are added to it and freed. */
void ckpt_write_config(const AtomicDir *ad, const Config *c, const TokHeader *tok, cJSON *sections);
/* NAME (a safetensors file) from base[] laid out by t[n], or from get;
 * returns its XXH3-64. */
uint64_t ckpt_write_tensors(const AtomicDir *ad, const char *name, const ParamTensor *t, int n, const float *base);
uint64_t ckpt_write_tensors_from(const AtomicDir *ad, const char *name, const ParamTensor *t, int n, TensorSource get, void *ctx);
/* DIR/config.json: the model's config (validated) and its tokenizer into
 * *c and *tok; returns the whole object for the caller's own sections
 * (caller cJSON_Deletes it). */
cJSON *ckpt_read_config(const char *dir, Config *c, TokHeader *tok);
/* DIR/NAME into base[] laid out by t[n] (with `some`, the file may hold
 * more: a process's slice of the experts); when want_hash is non-zero the
 * file's XXH3-64 is checked first ("checksum mismatch: the checkpoint is
 * corrupt"). */
void ckpt_read_tensors(const char *dir, const char *name, const ParamTensor *t, int n, float *base, uint64_t want_hash, int some);
/* trainer.json: what exact resumption needs (sigma-formats(5)). Version 2
 * seals the file with its own checksum (json_write_file_sealed); version 1
 * (no "version" field, no checksum) is still read. */
#define CKPT_LOSS_WINDOW 50    /* steps of loss history for spike detection */
#define TRAINER_STATE_VERSION 2
typedef struct {
    uint64_t model_xxh3, optimizer_xxh3;
    uint64_t step, tokens_seen, skipped;
    uint64_t epoch, group, index;  /* the training loader's position */
    double loss_hist[CKPT_LOSS_WINDOW];
    uint64_t n_hist;
    float *expert_bias;            /* [n_bias], the caller's buffer */
    size_t n_bias;
} TrainerState;
/* What the run being resumed allows; every field of trainer.json is
 * checked against it on reading, naming the field. */
typedef struct {
    uint64_t tokens_per_step;      /* accum x micro_batch x seq_len */
    uint64_t seqs_per_step;        /* accum x micro_batch */
    uint64_t n_sequences;          /* in the training split, per epoch */
    uint64_t n_groups;             /* the loader's groups of shards per epoch */
    double bias_rate;
    size_t n_bias;                 /* n_layers x n_experts */
} StateLimits;
void ckpt_write_state(const AtomicDir *ad, const TrainerState *st);
void ckpt_read_state(const char *dir, TrainerState *st, const StateLimits *lim);

/* The model file's checksum that DIR/trainer.json records; 0 when there is
 * no trainer.json (an imported model). */
uint64_t ckpt_model_hash(const char *dir);

/* A run trained with the aux-loss-free balance (training.balance "bias")
 * chooses its experts by p + bias, at inference as in training: its
 * trainer.json's expert_bias into bias[n] and 1, or zeros and 0 for any
 * other checkpoint. */
int ckpt_read_routing_bias(const char *dir, float *bias, size_t n);

/* A checkpoint's model for inference (sigma-generate, sigma-export,
 * sigma-eval): PATH is a run or a checkpoint directory; the weights'
 * checksum is checked where recorded, and m->expert_bias holds its routing
 * bias. The buffers hold B x T tokens (T <= 0: the model's max_seq_len).
 * The checkpoint's tokenizer goes to *tok when non-NULL. Returns 1 when the
 * model routes with its bias (forwards then pass balance kind bias). */
int ckpt_load_model(Model *m, const char *path, int B, int T, TokHeader *tok);

#endif
