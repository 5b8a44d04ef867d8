/* The Sigma-MoE model on the CPU, in fp32: the reference every other part
 * (CUDA, sft, eval, export) is checked against. The model, the same in
 * every part: pre-norm decoder, every layer MoE, no biases:
 *
 *   x = embed(tokens)
 *   repeat L times:
 *     h = x + Wo . attn(rope(qknorm(Wq.rms(x))), rope(qknorm(Wk.rms(x))), Wv.rms(x))
 *     x = h + moe(rms(h))
 *   logits = head(rms(x))
 *
 * moe: router logits z = Wr.u (fp32), p = softmax(z) over ALL experts, the
 * top-k experts by p (by p + expert_bias when the aux-loss-free bias is on;
 * the bias changes the choice, never the weight), output
 * sum over chosen e of p_e * down_e(silu(gate_e.u) * up_e.u), p_e not
 * renormalised (Qwen3-MoE norm_topk_prob = false).
 *
 * Tensor names are Hugging Face Qwen3-MoE's, so export is a renaming:
 *   model.embed_tokens.weight                      [V, d]
 *   model.layers.N.input_layernorm.weight          [d]
 *   model.layers.N.self_attn.q_proj.weight         [H*hd, d]
 *   model.layers.N.self_attn.k_proj.weight         [KV*hd, d]
 *   model.layers.N.self_attn.v_proj.weight         [KV*hd, d]
 *   model.layers.N.self_attn.o_proj.weight         [d, H*hd]
 *   model.layers.N.self_attn.q_norm.weight         [hd]
 *   model.layers.N.self_attn.k_norm.weight         [hd]
 *   model.layers.N.post_attention_layernorm.weight [d]
 *   model.layers.N.mlp.gate.weight                 [E, d]
 *   model.layers.N.mlp.experts.M.gate_proj.weight  [de, d]
 *   model.layers.N.mlp.experts.M.up_proj.weight    [de, d]
 *   model.layers.N.mlp.experts.M.down_proj.weight  [d, de]
 *   model.norm.weight                              [d]
 *   lm_head.weight                                 [V, d]   (absent when tied)
 * all in one contiguous buffer, the experts of every layer after the rest
 * (layout.c); gradients in a second buffer of the same layout. Expert
 * parallelism: a process may hold a slice of each layer's experts (the
 * others' rows travel to it and back, see ExpertExchange). */
#ifndef SIGMA_MODEL_H
#define SIGMA_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/json.h"
#include "model/balance.h"

#define MODEL_MAX_LAYERS 256
#define MODEL_MAX_EXPERTS 4096   /* per layer */
#define MODEL_MAX_DIM (1 << 20)  /* d_model, head_dim, d_expert, heads: far above any real model */
#define MODEL_MAX_SEQ (1 << 20)  /* max_seq_len */
#define MODEL_MAX_PARAMS (1ull << 40)   /* 4 TiB of fp32 weights */

typedef struct {
    int vocab_size;
    int d_model;
    int n_layers;
    int n_heads, n_kv_heads, head_dim;
    int n_experts, d_expert;
    int top_k[MODEL_MAX_LAYERS];   /* experts per token, per layer; may change between steps */
    float rope_theta;              /* 10000 */
    float norm_eps;                /* 1e-6 */
    int tie_embeddings;            /* 0: separate lm_head */
    int max_seq_len;
} Config;

/* sigma-moe-tiny, nano, micro, test: 0, or -1 for an unknown name. The
 * vocabulary comes from the data (the shard set's tokenizer). */
int config_preset(Config *c, const char *name, int vocab_size);
/* From a JSON object (the fields above; top_k as an array of n_layers ints
 * or one int); dies with "WHAT: field F ..." on a missing or bad field. */
void config_from_json(Config *c, const cJSON *j, const char *what);
cJSON *config_to_json(const Config *c);
/* Dies naming the field when the config cannot work (heads not dividing,
 * k above the number of experts, zero sizes, ...) or is beyond the limits
 * above: every size is checked before any product is formed, and the
 * products (a tensor's elements, the parameter count) with overflow checks. */
void config_validate(const Config *c, const char *what);
/* Parameters in total, and active per token: the layers' weights with each
 * layer's experts counted top_k times; the embedding and the head are not
 * active parameters (the report's 0.5B of Sigma-MoE-Tiny counts so). */
void config_count_params(const Config *c, uint64_t *total, uint64_t *active);
/* Training FLOPs per token at sequence length T: 6 x (active + the head's
 * V*d, which every token multiplies) + causal attention, 6 L H hd T (QK^T
 * and PV over T/2 keys on average, forward 2 and backward 4 products). */
double config_train_flops(const Config *c, int T);

typedef struct {
    char name[96];
    size_t offset;                 /* into params / grads, in floats */
    size_t numel;
    int ndim;
    int shape[2];
} ParamTensor;

/* The parameter layout, written once (layout.c): the table of named
 * tensors and the offsets by kind both come from one walk over the tensors
 * in the order above; the CPU model's pointers, the GPU's offsets,
 * checkpoints and export all derive from it. Offsets are in floats. */
typedef enum { PT_LN1, PT_Q, PT_K, PT_V, PT_O, PT_QNORM, PT_KNORM, PT_LN2, PT_ROUTER, PT_EXPERTS, PT_LAYER_KINDS } LayerTensor;
typedef struct {
    size_t embed, norm, head;                           /* head == embed when tied */
    size_t layer[MODEL_MAX_LAYERS][PT_LAYER_KINDS];     /* PT_EXPERTS: the held experts' blocks of gate [de, d], up [de, d], down [d, de] */
    size_t expert;                                      /* floats per expert block: 3 de d */
    size_t experts_begin;                               /* the experts' range [experts_begin, total); the rest before it */
    size_t total;                                       /* n_params */
} ParamLayout;
/* The experts [first, first + count) of every layer. */
typedef struct {
    int first, count;
} ExpertRange;
void param_layout(ParamLayout *p, const Config *c);
/* The named tensors in buffer order into t[] (NULL: count only); returns their number. */
int param_tensors(ParamTensor *t, const Config *c);
/* The same for a process that holds the experts r of each layer. */
void param_layout_slice(ParamLayout *p, const Config *c, ExpertRange r);
int param_tensors_slice(ParamTensor *t, const Config *c, ExpertRange r);

typedef struct {
    float loss;                    /* ce + balance + z */
    float ce;                      /* mean over unmasked tokens */
    float balance;                 /* summed over layers */
    float z;                       /* summed over layers */
} Losses;

typedef struct Activations Activations;   /* private to model.c */

/* Expert parallelism: `size` processes (the group) each hold `count` =
 * E / size experts of every layer, rank r the slice [r * count, (r + 1) *
 * count). After the router a process sends each row (a token's input to one
 * of its chosen experts) to the rank that holds the expert, and the results
 * come back the same way. The rows to rank j are a contiguous block of the
 * expert-sorted rows, so one exchange moves them all. Implemented by the
 * caller (the trainer, over comm/comm.h); each call is a collective of the
 * whole group, which the ranks enter in the same order.
 *   counts: send[size * per] -> recv[size * per], the block j to rank j
 *   rows:   send rows of row_bytes, send_rows[j] of them to rank j in rank
 *           order, into recv, recv_rows[j] from rank j in rank order (in
 *           the memory of the device that computes) */
typedef struct {
    int size, rank;
    void (*counts)(void *ctx, const int *send, int *recv, int per);
    void (*rows)(void *ctx, const void *send, const int *send_rows, void *recv, const int *recv_rows, size_t row_bytes);
    void *ctx;
} ExpertExchange;

typedef struct {
    Config cfg;
    int B, T;                      /* the largest batch the buffers hold */
    float *params;                 /* [n_params] */
    float *grads;                  /* [n_params] */
    size_t n_params;
    ParamTensor *tensors;          /* [n_tensors], in buffer order */
    int n_tensors;
    float *expert_bias;            /* [n_layers * n_experts] aux-loss-free bias (not trained by gradient) */
    float *counts;                 /* [n_layers * n_experts] tokens routed to each expert by the last forward */
    /* Tests: where set, layer l routes each (token, slot) to the expert
     * forced_sel[l][n*k + s] instead of its top-k, so that another device's
     * routing (its near ties tipped by other rounding) can be replayed. */
    const int *forced_sel[MODEL_MAX_LAYERS];
    ExpertRange experts;           /* the experts this process holds, of every layer: all of them but under --ep */
    const ExpertExchange *ep;      /* NULL: this process holds every expert */
    Activations *acts;
} Model;

/* Allocates everything for micro-batches up to B x T, and for each layer up
 * to the top_k that c gives it (cfg.top_k may be lowered later, not raised);
 * no allocation after. */
void model_init(Model *m, const Config *c, int B, int T);
/* The same, holding only the slice ep->rank of each layer's experts and
 * exchanging rows with the group's other processes in every forward and
 * backward (which they must run in step, with the same B and T). */
void model_init_ep(Model *m, const Config *c, int B, int T, const ExpertExchange *ep);
void model_free(Model *m);
/* Normal(0, std) matrices with output projections (o_proj, down_proj)
 * scaled by 1/sqrt(2 * n_layers), norms at 1; deterministic in seed. */
void model_init_params(Model *m, uint64_t seed, float std);
const ParamTensor *model_tensor(const Model *m, const char *name);   /* NULL if none */

/* Forward over inputs[B*T] with targets[B*T] (mask[B*T] of 0/1 weights or
 * NULL for all) at the config's current top_k; returns losses and keeps
 * what backward needs (the arrays too: they must live until then).
 * targets NULL: logits only (model_logits), and with a mask only those of
 * the rows whose mask is non-zero (the others are not written; a scorer's
 * few rows). Another device may write them all.
 *
 * Packed rows: pos[B*T] gives each token's position in its document, 0 where
 * a document begins within a row, then 1, 2, ...; a token attends only to
 * the tokens of its own document and is rotated by its own position, so a
 * packed row computes what its documents would one by one. NULL: one
 * document a row (positions 0 .. T-1). */
Losses model_forward(Model *m, const uint32_t *inputs, const uint32_t *targets, const float *mask, const int *pos, int B, int T,
                     const BalanceOptions *bo);
/* log(sum of exp(x[i])) over x[n], with the model's own vectorised
 * exponential (scratch[n]): a log-softmax's normaliser, for scorers. */
float log_sum_exp(const float *x, int n, float *scratch);
/* Dies (a bug in the caller) unless every row's positions are documents
 * counted from 0 by 1. */
void model_check_positions(const int *pos, int B, int T);
/* logits [B*T, V] of the last forward */
const float *model_logits(const Model *m);
/* grads += ce_scale * d(ce)/d(params) + aux_scale * d(balance + z)/d(params)
 * for the last forward. Pretraining accumulates with 1/accum for both;
 * fine-tuning weights each micro-batch's ce by its share of the step's
 * learned tokens (a token-level mean over the step, as transformers does),
 * and the balance terms still by 1/accum. */
void model_backward(Model *m, float ce_scale, float aux_scale);
void model_zero_grads(Model *m);

/* The routing of layer l in the last forward, summed over its tokens (the
 * load itself is m->counts; balance.h has its statistics). */
RouteSums model_route_sums(const Model *m, int layer);
/* The expert of each (token, slot) of layer l in the last forward:
 * sel[B*T*k], k in *k (tests compare devices' routing with it). */
const int *model_selection(const Model *m, int layer, int *k);
/* Aux-loss-free bias step: bias_e += rate * sign(mean count - count_e). */
void model_update_bias(Model *m, float rate);

/* safetensors, fp32, strictly to the specification; reading checks every
 * name, dtype, shape and offset and dies naming the tensor. `prefix` is
 * prepended to every name ("" for the model, "m." / "v." for AdamW).
 * Loading wants exactly the tensors t[n] in the file, or with `some` at
 * least them (a process's slice of the experts). */
void safetensors_save(const char *path, const ParamTensor *t, int n, const float *base, const char *prefix);
void safetensors_load(const char *path, const ParamTensor *t, int n, float *base, const char *prefix, int some);
/* The data of tensor i (its numel floats) when the writer reaches it, in
 * order: the tensors need not be in one buffer (or one process). */
typedef const float *(*TensorSource)(void *ctx, int i, const ParamTensor *t);
void safetensors_save_from(const char *path, const ParamTensor *t, int n, TensorSource get, void *ctx, const char *prefix);

/* The one safetensors reader (sigma's checkpoints and Hugging Face files):
 * st_open reads the header and checks all of it against the file's size
 * before any data is read: a header length within the file and at most
 * ST_MAX_HEADER (the safetensors library's limit), a JSON object, every
 * tensor with a known dtype, a shape of non-negative sizes, data_offsets of
 * two integers whose range fits the data and equals shape x dtype size,
 * names once each, the data contiguous and covering every byte after the
 * header. Every error names the file, and the tensor and field. */
#define ST_MAX_HEADER 100000000u
#define ST_MAX_DIMS 8
typedef struct {
    const char *name;              /* into the parsed header */
    const char *dtype;
    int elem_bytes;
    int ndim;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;           /* data_offsets, from the start of the data */
} StTensor;
typedef struct {
    char *path;
    FILE *f;
    uint64_t header_len, data_start, data_size;
    cJSON *h;
    StTensor *t;                   /* [n], by name */
    size_t n;
} StFile;
void st_open(StFile *s, const char *path);
const StTensor *st_find(const StFile *s, const char *name);   /* NULL if absent */
/* The tensor e into out[want->numel] as fp32, after checking its shape
 * against want's and its dtype (F32, or BF16 where allowed). */
void st_read(StFile *s, const StTensor *e, const ParamTensor *want, int allow_bf16, float *out);
void st_close(StFile *s);

#endif
