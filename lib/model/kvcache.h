/* Inference with a key-value cache, on either device (model/device.h).
 *
 * A cache holds `rows` sequences, each of its own length, up to max_len
 * tokens: per layer the keys (after QK-norm and RoPE at the token's absolute
 * position) and the values of the KV heads only (grouped-query attention
 * shares them among the query heads), [layers][rows][KV heads][max_len]
 * [head_dim] each. A step appends new tokens to rows and runs the model over
 * those tokens alone, each attending to its row's cache up to itself:
 *
 *   prefill  a step of a prompt's tokens (several rows' prompts, of any
 *            lengths, in one step; a long prompt in several steps)
 *   decode   a step of one token for each row still generating
 *
 * so prompts of different lengths are batched without padding, and a row
 * that finishes drops out of the steps while the others go on. A step's
 * tokens come grouped by row: a row's tokens contiguous, in order, a row at
 * most once a step. Its result is the logits after each group's last token,
 * [groups, V], in the order of the groups: what predicts each row's next
 * token. The router is at the model's current top-k (its cfg.top_k), and
 * routes by p + expert bias where the balance options say so, as
 * model_forward.
 *
 * The row lengths are the host's (this file); the keys and values live on
 * the device that computes with them. */
#ifndef SIGMA_KVCACHE_H
#define SIGMA_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    int rows, max_len;         /* sequences, and tokens each may hold */
    int max_step;              /* tokens one step may bring, all rows together */
    int *len;                  /* [rows] tokens each row holds */
    int *mark;                 /* [rows] the last step each row took part in (kv_plan's check) */
    unsigned step;
    size_t bytes;              /* of the keys and values */
    void *impl;                /* the device's */
} KvCache;

/* Bytes of the keys and values of `rows` x max_len tokens: per token,
 * layers x KV heads x head_dim x 2 (a key and a value) x 4 (fp32). */
size_t kv_cache_bytes(const Config *c, int rows, int max_len);
/* The host's half of a cache: row lengths at 0, `bytes` set; the device's
 * open fills impl. Dies on sizes out of range. */
void kv_cache_init(KvCache *kv, const Config *c, int rows, int max_len, int max_step);
void kv_cache_free_host(KvCache *kv);
/* Empties a row: its next token is at position 0 (a new sequence, or one
 * re-encoded after its oldest tokens were dropped). */
static inline void kv_clear(KvCache *kv, int row) { kv->len[row] = 0; }

/* A step's plan, before any device computes it: checks rows[n] (each in
 * range, contiguous, once a step, with room for its tokens; a bug in the
 * caller otherwise), writes each token's position pos[n] and each group's
 * last token last[groups], and counts the tokens into the rows' lengths.
 * Returns the number of groups. */
int kv_plan(KvCache *kv, const int *rows, int n, int *pos, int *last);

/* ---- the CPU (model.c) -------------------------------------------------------- */

/* The rotation's tables for positions 0 .. T-1, cos and sin [T, hd/2] of
 * position x theta^(-2i/hd), computed in double and rounded: the forward's
 * and every device's cache's. */
void rope_tables(float *cosv, float *sinv, const Config *c, int T);

/* A cache for m's config, with the scratch of steps of up to max_step tokens. */
KvCache *model_kv_open(const Model *m, int rows, int max_len, int max_step);
void model_kv_free(KvCache *kv);
/* One step (see above): tokens[n] appended to rows rows[n]; returns the
 * logits [groups, V] (the cache's buffer, valid until the next step). Fills
 * m->counts with the step's routing, as a forward does. */
const float *model_step(Model *m, KvCache *kv, const uint32_t *tokens, const int *rows, int n, const BalanceOptions *bo);

#endif
