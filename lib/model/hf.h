/* Hugging Face model directories (Qwen3-MoE): export and import. */
#ifndef SIGMA_HF_H
#define SIGMA_HF_H

#include <stdint.h>

#include "model/model.h"
#include "text/tokenizer.h"

/* Writes OUT (atomically; an existing OUT only with force): config.json,
 * generation_config.json, the weights as model.safetensors or, above
 * max_shard bytes, model-0000i-of-0000n.safetensors with
 * model.safetensors.index.json, in bf16 (round to nearest even) or fp32;
 * and with a tokenizer, tokenizer.json and tokenizer_config.json. Dies when
 * the layers do not share one top-k (Qwen3-MoE has one). */
void hf_export(const Model *m, const Tokenizer *tok, const char *out, int force, int bf16, uint64_t max_shard);
/* config.json of a Qwen3-MoE directory into a sigma config; refuses what
 * sigma's model cannot represent (renormalised top-k, dense layers, biases). */
void hf_config_read(Config *c, const char *dir);
/* The weights (F32 or BF16, one file or sharded with an index) into m. */
void hf_weights_read(Model *m, const char *dir);

#endif
