/* A run's checkpoint directory (sigma-formats(5)): OUT/step-NNNNNNNN/ written
 * atomically, then OUT/latest replaced atomically to name it, then all but
 * the newest `keep` removed. A crash at any point leaves `latest` naming a
 * complete checkpoint. */
#ifndef SIGMA_CKPT_H
#define SIGMA_CKPT_H

#include <stdint.h>

#include "base/base.h"
#include "model/model.h"

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

#endif

/* Loading a checkpoint's model for inference (sigma-generate, sigma-eval):
 * config.json's model section and model.safetensors, checked against the
 * checksum in trainer.json. PATH is a run or a checkpoint directory. The
 * buffers hold B x T tokens (T <= 0: the model's max_seq_len). The
 * checkpoint's tokenizer fingerprint goes to fingerprint[16] when non-NULL. */
void ckpt_load_model(Model *m, const char *path, int B, int T, uint8_t fingerprint[16]);
