/* The parameter layout, written once: one walk over the tensors in buffer
 * order gives the named table (model_init, checkpoints, export) and the
 * offsets by kind (the CPU model's pointers, the GPU's offsets); see
 * model.h. */
#include "model/model.h"

#include <stdio.h>
#include <string.h>

/* Hugging Face Qwen3-MoE's names: "model.layers.N." + the layer's suffix,
 * "model.layers.N.mlp.experts.M." + the expert's. */
static const char *const layer_names[PT_LAYER_KINDS] = {
    [PT_LN1] = "input_layernorm.weight",         [PT_Q] = "self_attn.q_proj.weight",
    [PT_K] = "self_attn.k_proj.weight",          [PT_V] = "self_attn.v_proj.weight",
    [PT_O] = "self_attn.o_proj.weight",          [PT_QNORM] = "self_attn.q_norm.weight",
    [PT_KNORM] = "self_attn.k_norm.weight",      [PT_LN2] = "post_attention_layernorm.weight",
    [PT_ROUTER] = "mlp.gate.weight",             [PT_EXPERTS] = NULL,
};
static const char *const expert_names[3] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};

/* [rows, cols] of a layer tensor (cols 0: a vector); of each expert's three for PT_EXPERTS */
static void layer_shape(const Config *c, int kind, int part, int *rows, int *cols)
{
    int d = c->d_model, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    static const int vec = 0;
    switch (kind) {
    case PT_LN1: case PT_LN2: *rows = d; *cols = vec; break;
    case PT_Q: *rows = qd; *cols = d; break;
    case PT_K: case PT_V: *rows = kvd; *cols = d; break;
    case PT_O: *rows = d; *cols = qd; break;
    case PT_QNORM: case PT_KNORM: *rows = hd; *cols = vec; break;
    case PT_ROUTER: *rows = c->n_experts; *cols = d; break;
    default: *rows = part < 2 ? c->d_expert : d; *cols = part < 2 ? d : c->d_expert; break;   /* gate, up; down */
    }
}

typedef struct {
    ParamTensor *t;            /* the table being filled, or NULL */
    int n;
    ParamLayout *p;            /* the offsets being filled, or NULL */
} Walk;

static size_t emit(Walk *w, size_t *off, const char *name, int rows, int cols)
{
    if (w->t) {
        ParamTensor *t = &w->t[w->n];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->offset = *off;
        t->ndim = cols ? 2 : 1;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->numel = (size_t)rows * (size_t)(cols ? cols : 1);
    }
    w->n++;
    size_t at = *off;
    *off += (size_t)rows * (size_t)(cols ? cols : 1);
    return at;
}

/* Every tensor in buffer order; returns the number of floats. The layers'
 * dense tensors (attention, norms, router) come first, with the embedding,
 * the final norm and the head; then every layer's experts, of which a
 * process holds the slice r (all of them when r is everything): the
 * replicated weights and the expert-parallel ones are two contiguous
 * ranges, each reduced over its own group of ranks. Names are formatted
 * only when a table is filled; an expert keeps its index in the whole
 * layer. */
static size_t walk(Walk *w, const Config *c, ExpertRange r)
{
    size_t off = 0, at;
    char name[96] = "";
    int rows, cols;
    size_t embed = emit(w, &off, "model.embed_tokens.weight", c->vocab_size, c->d_model);
    if (w->p) w->p->embed = embed;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < PT_EXPERTS; k++) {
            layer_shape(c, k, 0, &rows, &cols);
            if (w->t) snprintf(name, sizeof name, "model.layers.%d.%s", l, layer_names[k]);
            at = emit(w, &off, name, rows, cols);
            if (w->p) w->p->layer[l][k] = at;
        }
    layer_shape(c, PT_LN1, 0, &rows, &cols);
    at = emit(w, &off, "model.norm.weight", rows, cols);
    if (w->p) w->p->norm = at;
    at = c->tie_embeddings ? embed : emit(w, &off, "lm_head.weight", c->vocab_size, c->d_model);
    if (w->p) w->p->head = at;
    if (w->p) w->p->experts_begin = off;
    for (int l = 0; l < c->n_layers; l++) {
        if (w->p) w->p->layer[l][PT_EXPERTS] = off;
        for (int e = r.first; e < r.first + r.count; e++)
            for (int part = 0; part < 3; part++) {
                layer_shape(c, PT_EXPERTS, part, &rows, &cols);
                if (w->t) snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s", l, e, expert_names[part]);
                emit(w, &off, name, rows, cols);
            }
    }
    return off;
}

static ExpertRange whole(const Config *c) { return (ExpertRange){0, c->n_experts}; }

void param_layout(ParamLayout *p, const Config *c) { param_layout_slice(p, c, whole(c)); }
int param_tensors(ParamTensor *t, const Config *c) { return param_tensors_slice(t, c, whole(c)); }

void param_layout_slice(ParamLayout *p, const Config *c, ExpertRange r)
{
    Walk w = {.p = p};
    p->total = walk(&w, c, r);
    p->expert = 3 * (size_t)c->d_expert * c->d_model;
}

int param_tensors_slice(ParamTensor *t, const Config *c, ExpertRange r)
{
    Walk w = {.t = t};
    walk(&w, c, r);
    return w.n;
}
