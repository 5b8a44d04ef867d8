/* Hugging Face model directories (Qwen3-MoE): export and import. */
#ifndef SIGMA_HF_H
#define SIGMA_HF_H

#include <stdint.h>

#include "model/model.h"
#include "text/tokenizer.h"

typedef struct {
    int bf16;              /* the weights in bf16 (round to nearest even), else fp32 */
    uint64_t max_shard;    /* bytes per safetensors file */
    int force;             /* replace an existing OUT */
    int chat;              /* fine-tuned on chat (sigma-sft): a reply ends with <|im_end|> */
} HfExportOptions;
/* Writes OUT (atomically; an existing OUT only with force): config.json,
 * generation_config.json, the weights as model.safetensors or, above
 * max_shard bytes, model-0000i-of-0000n.safetensors with
 * model.safetensors.index.json; and with a tokenizer, tokenizer.json (its
 * special tokens as added tokens) and tokenizer_config.json, with the chat
 * template (text/chat.h) when the tokenizer has the chat tokens. The end of
 * generation: <|endoftext|>, and for a chat model <|im_end|> before it.
 * Dies when the layers do not share one top-k (Qwen3-MoE has one), or for
 * a chat model whose tokenizer lacks the chat tokens. */
void hf_export(const Model *m, const Tokenizer *tok, const char *out, const HfExportOptions *o);
/* config.json of a Qwen3-MoE directory into a sigma config; refuses what
 * sigma's model cannot represent (renormalised top-k, dense layers, biases). */
void hf_config_read(Config *c, const char *dir);
/* The weights (F32 or BF16, one file or sharded with an index) into m. */
void hf_weights_read(Model *m, const char *dir);

#endif
