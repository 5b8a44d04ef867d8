// The Sigma-MoE model on an NVIDIA GPU, forward and backward: see
// gpu_model.h for the precision, model.h for the model, and model.c (the
// CPU reference) for the same algorithm in plain C. This file holds the
// GpuModel (its buffers, carved out of one allocation), the setup, and the
// forward and backward passes, which call the layers in model.c's order
// and in reverse; the kernels and their launchers are in one header per
// layer kind, included here (one translation unit, as llm.c's llmc/*.cuh):
// embedding.cuh, rmsnorm.cuh, rope.cuh, attention.cuh, kvattention.cuh,
// router.cuh, experts.cuh, loss.cuh, adamw.cuh, over matmul.cuh and
// common.cuh (whose opening comment lists every room). The layers take
// tensors, sizes and a GpuCtx, never the GpuModel. At the end, the
// key-value cache's step for inference (model/kvcache.h). N = B*T tokens, A = N*k (token, slot)
// assignments, row-major throughout.
//
// Streams: the GpuModel owns a non-blocking main stream and its cuBLAS
// handle (g->ctx); every kernel, product and copy goes there, and the host
// waits on it (copy_to_host) where it reads results. The cuBLAS experts'
// products spread over side streams ordered against the main one by events
// (experts.cuh). Nothing relies on the legacy default stream.
//
// The MoE layer: an fp32 router kernel (softmax and top-k per token), the
// counting sort of assignments by expert on the host (route_sort, the same
// code as the CPU's, one small copy each way per layer), a gather, then
// per-expert cuBLAS products over each expert's rows, and a
// probability-weighted combine written as a gather (no atomics). With
// EXPERTS_GROUPED, the sort runs on the device and each product is one
// grouped kernel over all experts (grouped.cu): no host round trip; with
// EXPERTS_CUTLASS, the same sort and CUTLASS's grouped GEMM
// (cutlass_experts.cu).
// Attention: cuBLAS batched products per (sequence, head) around a causal
// softmax kernel, the scores recomputed in backward; or, with
// ATTENTION_FLASH, fused flash-style kernels (flash.cu) for head sizes 16,
// 32, 64, 96 and 128 (flash_supported); or, with ATTENTION_CUDNN, cuDNN's
// fused attention (cudnn_attention.cu). Each way only each row's
// log-sum-exp is kept between forward and backward. The libraries' paths
// load and build what they need in gpu_model_create (open_libraries);
// where they cannot, the model takes cuBLAS's, as for a shape it cannot
// take. Packed rows (pos, as
// model_forward's): the positions are uploaded with the inputs (g->pos) and
// kept for the backward; RoPE rotates by them and attention keeps each
// query to its document's keys. The paths (GpuPaths,
// model/device.h) are chosen once, in gpu_model_create, and kept in
// g->paths; no environment variable is read here.
#include "cuda/gpu_model.h"

#include "cuda/common.cuh"
#include "cuda/adamw.cuh"
#include "cuda/attention.cuh"
#include "cuda/embedding.cuh"
#include "cuda/experts.cuh"
#include "cuda/kvattention.cuh"
#include "cuda/loss.cuh"
#include "cuda/matmul.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope.cuh"
#include "cuda/router.cuh"

#include <cuda_profiler_api.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "model/device.h"
#include "model/kvcache.h"
#include "model/route.h"
}

// ---------------------------------------------------------------- buffers

// Offsets (in elements) of one layer's tensors in the parameter buffers, the
// order of model.h.
typedef struct {
    size_t ln1, wqkv, wo, qnorm, knorm, ln2, router, expert;
} LayerOffsets;

typedef struct {
    float *x;                  // [N, d] residual stream entering the layer
    bf16 *ln1;                 // [N, d]
    float *r1;                 // [N]
    bf16 *qkv;                 // [N, qd + 2 kvd] projections (q, k before their norm; v)
    bf16 *qr, *kr;             // [N, qd], [N, kvd] normed and rotated
    float *qrs, *krs;          // [N*H], [N*KV]
    float *att_lse;            // [B*H*T]
    bf16 *ao;                  // [N, qd] attention output
    float *h;                  // [N, d] after the attention residual
    bf16 *ln2;                 // [N, d]
    float *r2;                 // [N]
    float *z, *p, *q;          // [N, E] router logits, probabilities, softmax(z / tau)
    float *lse;                // [N]
    float *scal;               // [N, 3] per-token terms of the balance statistics
    int *sel, *order, *row;    // [A]
    int *offs, *tiles;         // [E+1] each: sorted rows and grouped tiles of each expert (grouped experts)
    bf16 *xe;                  // [A, d] expert inputs, sorted by expert
    bf16 *ye;                  // [A, d]
    // the rows the held experts compute, R of them: xe itself (R = A), or
    // under expert parallelism what the group's ranks sent (route.h's order)
    bf16 *xr;                  // [R, d]
    int *perm, *inv;           // [R] each: the received rows' computing order as a gather, and back (expert parallelism)
    int *roffs, *rtiles;       // [Eh+1] each: offs and tiles of the received rows (grouped experts; expert parallelism)
    bf16 *gu;                  // [R, 2 de] gate | up (shared scratch when recomputed)
    bf16 *act;                 // [R, de]
    double *stats;             // [2E + 3]: sum p, sum q per expert; sum of scal's columns (this layer's row of GpuModel.stats)
} LayerActs;

struct GpuModel {
    Config alloc, cfg;         // buffers' top-k; the last forward's
    int Bmax, Tmax, verbose, tile_rows;
    GpuPaths paths;            // the kernel paths taken
    GpuCtx ctx;                // the main stream and its cuBLAS handle
    ExpertStreams streams;     // the cuBLAS experts' side streams
    CudnnAttention *cudnn;     // cuDNN's plans and workspace (ATTENTION_CUDNN)
    CutlassExperts *cutlass;   // CUTLASS's kernels and their arguments (EXPERTS_CUTLASS)
    size_t n_params;
    int n_tensors;
    ParamTensor *tensors;      // host copy of the table
    // expert parallelism (model.h): this rank holds Eh of every layer's E
    // experts and exchanges rows with its group's ranks; else Eh = E
    const ExpertExchange *ep;  // NULL: every expert here
    ExpertRange experts;       // the held experts
    int Eh;
    size_t rmax;               // rows the held experts' buffers take: the group's ranks times Amax (ep), else Amax
    bf16 *yr, *dyr;            // [Rmax, d] the held experts' outputs and their gradients, by expert (ep)
    float *dxr;                // [Rmax, d] (ep)
    void *xfer;                // [Rmax, d] fp32: rows as they travel (ep)
    int *h_rcnt[MODEL_MAX_LAYERS], *h_roffs[MODEL_MAX_LAYERS];   // [S*Eh], [Eh+1] each layer's received counts, offsets
    ExchangePlan plan;         // the host's plan arrays (route.h), for one layer at a time
    int *h_scnt, *h_perm, *h_tiles;   // [S*Eh], [2 Rmax], [Eh+1]
    size_t embed, norm, head;
    LayerOffsets lo[MODEL_MAX_LAYERS];
    float *params;             // [n_params] fp32 master
    bf16 *params_bf;           // [n_params]
    float *grads;              // [n_params]
    float *moments;            // [2 * owned]: m, then v, of the weights it owns, span after span
    Span own[DEVICE_MAX_SPANS];// the weights whose optimizer state it holds (gpu_model_own)
    int n_own;
    size_t owned;
    char *acts_base;           // one allocation for everything below
    size_t acts_bytes;
    LayerActs L[MODEL_MAX_LAYERS];
    float *x_final;            // [N, d] leaving the last layer
    bf16 *lnf;                 // [N, d]
    float *rf;                 // [N]
    float *logits;             // [N, V]
    float *lsef, *rowloss;     // [N]
    uint32_t *inputs, *targets;// [N]
    float *mask;               // [N] or unused
    int *pos;                  // [N] positions in packed rows (model.h), or unused
    float *cosv, *sinv;        // [T, hd/2]
    float *bias;               // [L*E] expert bias
    float *coef;               // [L, 2E] the router backward's per-expert terms
    int *emb_pos, *emb_seg;    // [N], [N+1] positions sorted by token
    float *counts;             // [L*E] tokens per expert (grouped experts: counted on the device)
    int *route_scratch;        // grouped_route_scratch(Amax, E)
    // scratch, reused layer by layer
    float *S;                  // [B*H, T, T] attention scores, then dP; with flash, D [N*H]
    bf16 *P;                   // [B*H, T, T] probabilities, then dS; none with flash
    float *dkh, *dvh;          // [B*H, T, hd] per query head; none with flash (it sums the groups)
    float *dx, *dh, *du, *dln; // [N, d]
    bf16 *dh_bf;               // [N, d]
    bf16 *dao, *dqr, *dkr;     // [N, qd], [N, qd], [N, kvd]
    bf16 *dqkv;                // [N, qd + 2 kvd]
    float *dn;                 // [N*H, hd] QK-norm weight-gradient input
    float *norm_partial;       // [R / NORM_ROWS, C] of the largest norm: the model's (R = N, C = d) or QK's (N*H, hd)
    bf16 *dz;                  // [N, E]
    float *dpsel;              // [Amax]
    bf16 *dye, *dgu;           // [Amax, d], [Rmax, 2 de]
    float *dact, *dxe;         // [Rmax, de], [Amax, d]
    bf16 *dlogits;             // [N, V]
    double *norm_blocks;       // [NORM_BLOCKS]
    void **ptrs;               // [L, PKINDS * Bmax*H] the cuBLAS attention's pointer arrays, see upload_attention_pointers
    int ptr_B, ptr_T;
    // host mirrors of the last forward
    int B, T, have_forward, have_mask, have_pos, kused[MODEL_MAX_LAYERS];
    BalanceOptions bo;
    int *h_sel[MODEL_MAX_LAYERS], *h_offs[MODEL_MAX_LAYERS];   // [Amax], [E+1]
    int sel_on_host;           // whether h_sel holds the last forward's (grouped experts copy it when asked)
    float *h_counts;           // [L*E]
    double *stats;             // [L, 2E + 3] the layers' stats, one buffer
    double *h_stats;           // [L, 2E + 3]
    float *h_logits, *h_rowloss, *h_mask;
    int *h_order;              // [2 Amax] route_sort's order and row
    int n_seg;                 // distinct tokens in the last forward with targets
    int *h_pos, *h_seg;        // [N], [N+1]
    float *h_coef;             // [L, 2E]
    float *h_gp;               // [L] the top-1 LBL's term common to all experts
    double *balance_fhat;      // [L, E] the top-1 LBL's statistics of the last forward, for the backward
    double balance_pbar[MODEL_MAX_LAYERS];
    // profile
    int prof, cur_phase;       // on; the phase being timed (-1: none)
    cudaEvent_t ev[2];
    double prof_ms[16];
};

enum { PH_EMBED, PH_NORM, PH_QKV, PH_ATTN, PH_OPROJ, PH_ROUTER, PH_SORT, PH_EXPERTS, PH_COMBINE, PH_HEAD, PH_LOSS, PH_OPT, PH_COUNT };
static const char *const phase_name[PH_COUNT] = {"embedding", "rmsnorm", "qkv + qk-norm/rope", "attention", "o_proj",
                                                 "router + balance", "sort", "experts", "gather/combine", "lm head",
                                                 "cross-entropy", "adamw + norm"};
static void phase(GpuModel *g, int ph)
{
    if (!g->prof) return;
    if (g->cur_phase >= 0) {
        CUDA_CHECK(cudaEventRecord(g->ev[1], g->ctx.stream));
        CUDA_CHECK(cudaEventSynchronize(g->ev[1]));
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, g->ev[0], g->ev[1]));
        g->prof_ms[g->cur_phase] += ms;
    }
    g->cur_phase = ph;
    if (ph >= 0) CUDA_CHECK(cudaEventRecord(g->ev[0], g->ctx.stream));
}

// The layer offsets from the one parameter layout (model/layout.c). The
// attention's input product is one [qd + 2 kvd, d] matrix: it needs q, k, v
// one after the other, which the layout gives and this checks.
static void layer_offsets(GpuModel *g, const Config *c)
{
    ParamLayout pl;
    param_layout_slice(&pl, c, g->experts);
    size_t d = c->d_model, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    g->embed = pl.embed;
    g->norm = pl.norm;
    g->head = pl.head;
    for (int l = 0; l < c->n_layers; l++) {
        const size_t *o = pl.layer[l];
        if (o[PT_K] != o[PT_Q] + qd * d || o[PT_V] != o[PT_K] + kvd * d)
            BUG("layer %d: q, k and v are not adjacent in the parameter layout", l);
        g->lo[l] = (LayerOffsets){.ln1 = o[PT_LN1], .wqkv = o[PT_Q], .wo = o[PT_O], .qnorm = o[PT_QNORM], .knorm = o[PT_KNORM],
                                  .ln2 = o[PT_LN2], .router = o[PT_ROUTER], .expert = o[PT_EXPERTS]};
    }
    if (pl.total != g->n_params) BUG("GPU parameter layout has %zu floats, the host's %zu", pl.total, g->n_params);
}

// Carving: AT(ptr, type, n) places n values of type at the next 256-byte
// boundary from `off` in `base` (none when base is NULL: a dry run that only
// counts), for both carves (the model's and the key-value cache's).
#define AT(ptr, type, n)                                   \
    do {                                                   \
        off = (off + 255) & ~(size_t)255;                  \
        if (base) ptr = (type *)(void *)(base + off);      \
        off += (n) * sizeof(type);                         \
    } while (0)

// Carves every activation and scratch buffer out of one allocation (or
// only measures it when base is NULL), printing each kind's size.
static size_t carve(GpuModel *g, char *base, int print)
{
    const Config *c = &g->alloc;
    size_t N = (size_t)g->Bmax * g->Tmax, T = g->Tmax, B = g->Bmax, d = c->d_model, hd = c->head_dim, H = c->n_heads;
    size_t qd = H * hd, kvd = (size_t)c->n_kv_heads * hd, qkv = qd + 2 * kvd, E = c->n_experts, de = c->d_expert;
    size_t V = c->vocab_size, L = c->n_layers, amax = 0, off = 0, mark = 0;
    for (size_t l = 0; l < L; l++) amax = N * c->top_k[l] > amax ? N * c->top_k[l] : amax;
#define REPORT(what) do { if (print) info("gpu memory: %-40s %9.3f GiB", what, (off - mark) / 1073741824.0); mark = off; } while (0)
    for (size_t l = 0; l < L; l++) {
        LayerActs *a = &g->L[l];
        AT(a->x, float, N * d); AT(a->ln1, bf16, N * d); AT(a->r1, float, N);
        AT(a->qkv, bf16, N * qkv); AT(a->qr, bf16, N * qd); AT(a->kr, bf16, N * kvd);
        AT(a->qrs, float, N * H); AT(a->krs, float, N * c->n_kv_heads); AT(a->att_lse, float, B * H * T);
        AT(a->ao, bf16, N * qd); AT(a->h, float, N * d); AT(a->ln2, bf16, N * d); AT(a->r2, float, N);
    }
    REPORT("attention activations (all layers)");
    size_t S = g->ep ? (size_t)g->ep->size : 1, Eh = g->Eh, rmax = amax * S;
    for (size_t l = 0; l < L; l++) {
        LayerActs *a = &g->L[l];
        size_t A = N * c->top_k[l], R = A * S;
        AT(a->z, float, N * E); AT(a->p, float, N * E); AT(a->q, float, N * E); AT(a->lse, float, N); AT(a->scal, float, N * 3);
        AT(a->sel, int, A); AT(a->order, int, A); AT(a->row, int, A);
        AT(a->offs, int, E + 1); AT(a->tiles, int, E + 1);
        AT(a->xe, bf16, A * d); AT(a->ye, bf16, A * d);
        if (g->ep) {
            AT(a->xr, bf16, R * d); AT(a->perm, int, R); AT(a->inv, int, R); AT(a->roffs, int, Eh + 1); AT(a->rtiles, int, Eh + 1);
        } else if (base) {
            a->xr = a->xe;
            a->roffs = a->offs;
            a->rtiles = a->tiles;
        }
        if (!g->paths.recompute) { AT(a->gu, bf16, R * 2 * de); AT(a->act, bf16, R * de); }
    }
    AT(g->stats, double, L * (2 * E + 3));   // one buffer, so one copy brings every layer's to the host
    for (size_t l = 0; l < L && base; l++) g->L[l].stats = g->stats + l * (2 * E + 3);
    if (g->paths.recompute) {   // one pair for every layer: backward recomputes them
        bf16 *gu = NULL, *act = NULL;
        AT(gu, bf16, rmax * 2 * de); AT(act, bf16, rmax * de);
        for (size_t l = 0; l < L; l++) { g->L[l].gu = gu; g->L[l].act = act; }
    }
    REPORT(g->paths.recompute ? "router and expert activations (recomputed)" : "router and expert activations");
    AT(g->x_final, float, N * d); AT(g->lnf, bf16, N * d); AT(g->rf, float, N);
    AT(g->logits, float, N * V); AT(g->lsef, float, N); AT(g->rowloss, float, N);
    AT(g->inputs, uint32_t, N); AT(g->targets, uint32_t, N); AT(g->mask, float, N); AT(g->pos, int, N);
    AT(g->cosv, float, T * hd / 2); AT(g->sinv, float, T * hd / 2); AT(g->bias, float, L * E); AT(g->coef, float, L * 2 * E);
    AT(g->emb_pos, int, N); AT(g->emb_seg, int, N + 1);
    AT(g->counts, float, L * E); AT(g->route_scratch, int, grouped_route_scratch((int)amax, (int)E));
    REPORT("head, logits and inputs");
    int flash = g->paths.attention != ATTENTION_CUBLAS;   // cuDNN's packed rows take the fused kernels
    if (flash) { AT(g->S, float, N * H); }
    else { AT(g->S, float, B * H * T * T); AT(g->P, bf16, B * H * T * T); }
    if (!flash) { AT(g->dkh, float, B * H * T * hd); AT(g->dvh, float, B * H * T * hd); }
    REPORT(flash ? "attention scratch (fused kernels)" : "attention scratch (scores, recomputed in backward)");
    AT(g->dx, float, N * d); AT(g->dh, float, N * d); AT(g->du, float, N * d); AT(g->dln, float, N * d); AT(g->dh_bf, bf16, N * d);
    AT(g->dao, bf16, N * qd); AT(g->dqr, bf16, N * qd); AT(g->dkr, bf16, N * kvd); AT(g->dqkv, bf16, N * qkv);
    size_t ln_partial = cdiv(N, NORM_ROWS) * d, qk_partial = cdiv(N * H, NORM_ROWS) * hd;
    AT(g->dn, float, N * H * hd); AT(g->norm_partial, float, ln_partial > qk_partial ? ln_partial : qk_partial);
    AT(g->dz, bf16, N * E); AT(g->dpsel, float, amax); AT(g->dye, bf16, amax * d); AT(g->dgu, bf16, rmax * 2 * de);
    AT(g->dact, float, rmax * de); AT(g->dxe, float, amax * d); AT(g->dlogits, bf16, N * V);
    if (g->ep) {
        AT(g->yr, bf16, rmax * d); AT(g->dyr, bf16, rmax * d); AT(g->dxr, float, rmax * d);
        AT(g->xfer, float, rmax * d);
    }
    if (base) g->rmax = rmax;
    AT(g->norm_blocks, double, NORM_BLOCKS); AT(g->ptrs, void *, L * PKINDS * B * H);
    REPORT("gradient scratch");
#undef REPORT
    return off;
}

// ---------------------------------------------------------------- setup

// cos/sin [Tmax, hd/2] of the rotation, computed as the CPU's are so that
// both rotate alike.
static void upload_rope_tables(GpuModel *g)
{
    const Config *c = &g->alloc;
    int half = c->head_dim / 2, T = g->Tmax;
    float *cs = (float *)xmalloc((size_t)T * half * sizeof(float)), *sn = (float *)xmalloc((size_t)T * half * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            cs[(size_t)t * half + i] = (float)cos(ang);
            sn[(size_t)t * half + i] = (float)sin(ang);
        }
    copy_to_device(g->cosv, cs, (size_t)T * half * sizeof(float), g->ctx);
    copy_to_device(g->sinv, sn, (size_t)T * half * sizeof(float), g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // before the tables go
    free(cs);
    free(sn);
}

extern "C" int gpu_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

// The paths asked for where the shapes allow them, else the cuBLAS ones:
// *p becomes what the model takes.
static void take_paths(GpuPaths *p, const Config *c)
{
    // ATTENTION_FLASH: the fused kernels (flash.cu), far lighter on memory.
    // Their first version (WMMA, scores through shared memory) measured at
    // half the speed of cuBLAS's products around a softmax kernel on an
    // H200 (bench/gpu.md); the present one keeps every operand in registers
    // but has not run on a GPU, so cuBLAS stays the default until it is
    // measured.
    if (p->attention == ATTENTION_FLASH && !flash_supported(c->head_dim)) p->attention = ATTENTION_CUBLAS;
    // ATTENTION_CUDNN: cuDNN's fused attention, with the fused kernels for
    // packed rows (attention.cuh), so where both take the head size.
    if (p->attention == ATTENTION_CUDNN && !(cudnn_attention_supported(c->head_dim) && flash_supported(c->head_dim)))
        p->attention = ATTENTION_CUBLAS;
    // EXPERTS_GROUPED: the device-side sort and grouped products
    // (grouped.cu), where the expert widths allow. Not yet the default: they
    // have not run on a GPU (see bench/gpu.md).
    if (p->experts == EXPERTS_GROUPED &&
        !(grouped_supported(c->d_model, 2 * c->d_expert) && grouped_supported(c->d_expert, c->d_model)))
        p->experts = EXPERTS_CUBLAS;
    // EXPERTS_CUTLASS: the device-side sort and CUTLASS's grouped GEMM, the same widths.
    if (p->experts == EXPERTS_CUTLASS &&
        !(cutlass_experts_supported(c->d_model, 2 * c->d_expert) && cutlass_experts_supported(c->d_expert, c->d_model)))
        p->experts = EXPERTS_CUBLAS;
    // the cuBLAS experts over 1 .. GPU_MAX_EXPERT_STREAMS side streams (1: one after another, for comparison)
    if (p->expert_streams < 1) p->expert_streams = 1;
    if (p->expert_streams > GPU_MAX_EXPERT_STREAMS) p->expert_streams = GPU_MAX_EXPERT_STREAMS;
    p->recompute = p->recompute != 0;
}

// The libraries' paths: cuDNN loaded and the largest shape's plans built,
// CUTLASS's kernels initialised. Where one cannot (no library in this
// build or on this machine, another GPU, no plan), it says why and the
// model takes cuBLAS's path instead: *p is what it took.
static void open_libraries(GpuModel *g, GpuPaths *p, int verbose)
{
    const Config *c = &g->alloc;
    char why[512];
    if (p->attention == ATTENTION_CUDNN) {
        int qkv = (c->n_heads + 2 * c->n_kv_heads) * c->head_dim;   // v's row stride: it stays inside the qkv buffer
        g->cudnn = cudnn_attention_create(g->Bmax, g->Tmax, c->n_heads, c->n_kv_heads, c->head_dim, qkv, verbose, why, sizeof why);
        if (!g->cudnn) {
            warn("cuDNN attention: %s; taking cuBLAS attention", why);
            p->attention = ATTENTION_CUBLAS;
        }
    }
    if (p->experts == EXPERTS_CUTLASS) {
        g->cutlass = cutlass_experts_create(g->Eh, why, sizeof why);   // this rank's experts (all of them without --ep)
        if (!g->cutlass) {
            warn("CUTLASS experts: %s; taking cuBLAS experts", why);
            p->experts = EXPERTS_CUBLAS;
        }
    }
}

extern "C" GpuModel *gpu_model_create(const Model *host, const Config *alloc, int B, int T, GpuPaths *paths, int verbose)
{
    if (!gpu_count()) die("--device cuda: no CUDA device is visible");
    GpuPaths asked;
    if (!paths) {
        gpu_paths_default(&asked);
        paths = &asked;
    }
    take_paths(paths, alloc);
    GpuModel *g = (GpuModel *)xcalloc(1, sizeof *g);
    g->alloc = *alloc;
    g->cfg = host->cfg;
    g->Bmax = B;
    g->Tmax = T;
    g->paths = *paths;
    g->verbose = verbose;
    g->cur_phase = -1;
    g->tile_rows = grouped_tile_rows(B * T / alloc->n_experts);   // rows per expert at top-1
    g->ep = host->ep;
    g->experts = host->experts;
    g->Eh = host->experts.count;
    g->n_params = host->n_params;
    g->n_tensors = host->n_tensors;
    g->tensors = (ParamTensor *)xmalloc((size_t)host->n_tensors * sizeof(ParamTensor));
    memcpy(g->tensors, host->tensors, (size_t)host->n_tensors * sizeof(ParamTensor));
    layer_offsets(g, alloc);
    CUDA_CHECK(cudaStreamCreateWithFlags(&g->ctx.stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&g->ctx.blas));
    CUBLAS_CHECK(cublasSetStream(g->ctx.blas, g->ctx.stream));
    expert_streams_create(&g->streams, g->paths.expert_streams);
    open_libraries(g, paths, verbose);
    g->paths = *paths;
    size_t P = g->n_params;
    if (verbose) {
        cudaDeviceProp prop;
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
        info("gpu: %s (sm_%d%d), %.1f GiB", prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "fp32 master weights", P * 4 / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "bf16 weights", P * 2 / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "fp32 gradients", P * 4 / 1073741824.0);
        info("gpu memory: %-40s %9.3f GiB", "fp32 AdamW moments", P * 8 / 1073741824.0);
    }
    CUDA_CHECK(cudaMalloc(&g->params, P * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&g->params_bf, P * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&g->grads, P * sizeof(float)));
    g->own[0] = Span{0, P};
    g->n_own = 1;
    g->owned = P;
    CUDA_CHECK(cudaMalloc(&g->moments, 2 * P * sizeof(float)));
    CUDA_CHECK(cudaMemsetAsync(g->grads, 0, P * sizeof(float), g->ctx.stream));
    CUDA_CHECK(cudaMemsetAsync(g->moments, 0, 2 * P * sizeof(float), g->ctx.stream));
    g->acts_bytes = carve(g, NULL, verbose);
    CUDA_CHECK(cudaMalloc(&g->acts_base, g->acts_bytes));
    carve(g, g->acts_base, 0);
    if (verbose) info("gpu memory: %-40s %9.3f GiB", "total", gpu_model_bytes(g) / 1073741824.0);

    upload_rope_tables(g);
    const Config *c = alloc;
    size_t N = (size_t)B * T, E = c->n_experts;
    for (int l = 0; l < c->n_layers; l++) {
        g->h_sel[l] = (int *)xmalloc(N * c->top_k[l] * sizeof(int));
        g->h_offs[l] = (int *)xmalloc((E + 1) * sizeof(int));
    }
    if (g->ep) {
        int S = g->ep->size, Eh = g->Eh;
        for (int l = 0; l < c->n_layers; l++) {
            g->h_rcnt[l] = (int *)xcalloc((size_t)S * Eh, sizeof(int));
            g->h_roffs[l] = (int *)xcalloc((size_t)Eh + 1, sizeof(int));
        }
        g->plan = ExchangePlan{S, Eh, (int *)xmalloc(2 * (size_t)S * sizeof(int)), NULL, NULL,
                               (int *)xmalloc(2 * (size_t)S * Eh * sizeof(int)), NULL};
        g->plan.rrows = g->plan.srows + S;
        g->plan.at_expert = g->plan.at_rank + (size_t)S * Eh;
        g->h_scnt = (int *)xmalloc((size_t)S * Eh * sizeof(int));
        g->h_perm = (int *)xmalloc(2 * g->rmax * sizeof(int) + 1);
        g->h_tiles = (int *)xmalloc(((size_t)Eh + 1) * sizeof(int));
    }
    g->h_counts = (float *)xcalloc((size_t)c->n_layers * E, sizeof(float));
    g->h_stats = (double *)xcalloc((size_t)c->n_layers * (2 * E + 3), sizeof(double));
    g->h_rowloss = (float *)xmalloc(N * sizeof(float));
    g->h_mask = (float *)xmalloc(N * sizeof(float));
    size_t amax = 0;
    for (int l = 0; l < c->n_layers; l++) amax = N * c->top_k[l] > amax ? N * c->top_k[l] : amax;
    g->h_order = (int *)xmalloc(2 * amax * sizeof(int));
    g->h_pos = (int *)xmalloc(N * sizeof(int));
    g->h_seg = (int *)xmalloc((N + 1) * sizeof(int));
    g->h_coef = (float *)xmalloc(c->n_layers * 2 * E * sizeof(float));
    g->h_gp = (float *)xmalloc(c->n_layers * sizeof(float));
    g->balance_fhat = (double *)xcalloc((size_t)c->n_layers * E, sizeof(double));
    CUDA_CHECK(cudaEventCreate(&g->ev[0]));
    CUDA_CHECK(cudaEventCreate(&g->ev[1]));
    return g;
}

extern "C" size_t gpu_model_bytes(const GpuModel *g) { return g->n_params * (4 + 2 + 4 + 8) + g->acts_bytes; }

extern "C" void gpu_model_free(GpuModel *g)
{
    if (!g) return;
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // its work done before its memory goes
    CUDA_CHECK(cudaFree(g->params));
    CUDA_CHECK(cudaFree(g->params_bf));
    CUDA_CHECK(cudaFree(g->grads));
    CUDA_CHECK(cudaFree(g->moments));
    CUDA_CHECK(cudaFree(g->acts_base));
    for (int l = 0; l < g->alloc.n_layers; l++) { free(g->h_sel[l]); free(g->h_offs[l]); free(g->h_rcnt[l]); free(g->h_roffs[l]); }
    free(g->plan.srows);
    free(g->plan.at_rank);
    free(g->h_scnt);
    free(g->h_perm);
    free(g->h_tiles);
    free(g->h_counts);
    free(g->h_stats);
    free(g->h_rowloss);
    free(g->h_mask);
    free(g->h_logits);
    free(g->h_order);
    free(g->h_pos);
    free(g->h_seg);
    free(g->h_coef);
    free(g->h_gp);
    free(g->balance_fhat);
    free(g->tensors);
    CUDA_CHECK(cudaEventDestroy(g->ev[0]));
    CUDA_CHECK(cudaEventDestroy(g->ev[1]));
    expert_streams_destroy(&g->streams);
    cudnn_attention_free(g->cudnn);
    cutlass_experts_free(g->cutlass);
    CUBLAS_CHECK(cublasDestroy(g->ctx.blas));
    CUDA_CHECK(cudaStreamDestroy(g->ctx.stream));
    free(g);
}

// The host's buffers in and out on the main stream; an upload from the
// caller's buffer is waited for, so the caller may change it at once.
extern "C" void gpu_model_set_params(GpuModel *g, const float *params)
{
    copy_to_device(g->params, params, g->n_params * sizeof(float), g->ctx);
    to_bf16(g->params_bf, g->params, (long)g->n_params, g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
}
extern "C" void gpu_model_get_params(GpuModel *g, float *params)
{
    copy_to_host(params, g->params, g->n_params * sizeof(float), g->ctx);
}
// The moments of the owned weights, to and from the full layout's parts.
extern "C" void gpu_model_set_moments(GpuModel *g, const float *moments)
{
    size_t n = g->owned, at = 0;
    for (int i = 0; i < g->n_own; at += g->own[i].hi - g->own[i].lo, i++) {
        size_t lo = g->own[i].lo, len = g->own[i].hi - lo;
        copy_to_device(g->moments + at, moments + lo, len * sizeof(float), g->ctx);
        copy_to_device(g->moments + n + at, moments + g->n_params + lo, len * sizeof(float), g->ctx);
    }
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
}
extern "C" void gpu_model_get_moments(GpuModel *g, float *moments)
{
    size_t n = g->owned, at = 0;
    for (int i = 0; i < g->n_own; at += g->own[i].hi - g->own[i].lo, i++) {
        size_t lo = g->own[i].lo, len = g->own[i].hi - lo;
        copy_to_host(moments + lo, g->moments + at, len * sizeof(float), g->ctx);
        copy_to_host(moments + g->n_params + lo, g->moments + n + at, len * sizeof(float), g->ctx);
    }
}

// ZeRO-1: the moments of the weights in spans[n] only, zero until set.
extern "C" void gpu_model_own(GpuModel *g, const Span *spans, int n)
{
    if (n < 1 || n > DEVICE_MAX_SPANS) BUG("gpu_model_own of %d spans", n);
    for (int i = 0; i < n; i++)
        if (spans[i].lo > spans[i].hi || spans[i].hi > g->n_params || (i && spans[i].lo < spans[i - 1].hi))
            BUG("gpu_model_own: span [%zu, %zu) of %zu", spans[i].lo, spans[i].hi, g->n_params);
    CUDA_CHECK(cudaFree(g->moments));
    memcpy(g->own, spans, (size_t)n * sizeof *spans);
    g->n_own = n;
    g->owned = spans_total(spans, n);
    CUDA_CHECK(cudaMalloc(&g->moments, (2 * g->owned + 1) * sizeof(float)));
    CUDA_CHECK(cudaMemsetAsync(g->moments, 0, (2 * g->owned + 1) * sizeof(float), g->ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
}

extern "C" float *gpu_model_params(GpuModel *g)
{
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
    return g->params;
}

extern "C" void gpu_model_params_changed(GpuModel *g)
{
    to_bf16(g->params_bf, g->params, (long)g->n_params, g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
}
extern "C" float *gpu_model_grads(GpuModel *g)
{
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // the collectives run on their own stream
    return g->grads;
}

extern "C" void gpu_use_device(int local_rank)
{
    int n = 0;
    CUDA_CHECK(cudaGetDeviceCount(&n));
    if (n < 1) die("no GPU for local rank %d", local_rank);
    CUDA_CHECK(cudaSetDevice(local_rank % n));
}

extern "C" void gpu_model_get_grads(GpuModel *g, float *grads)
{
    copy_to_host(grads, g->grads, g->n_params * sizeof(float), g->ctx);
}
extern "C" void gpu_model_set_grads(GpuModel *g, const float *grads)
{
    copy_to_device(g->grads, grads, g->n_params * sizeof(float), g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
}
extern "C" void gpu_model_zero_grads(GpuModel *g)
{
    CUDA_CHECK(cudaMemsetAsync(g->grads, 0, g->n_params * sizeof(float), g->ctx.stream));
}

extern "C" void gpu_model_poison(GpuModel *g)
{
    CUDA_CHECK(cudaMemsetAsync(g->acts_base, 0xff, g->acts_bytes, g->ctx.stream));   // NaN in fp32 and bf16, -1 in ints
    g->ptr_B = g->ptr_T = 0;                                                        // the pointer arrays went with it
    upload_rope_tables(g);                                                          // and the tables
}

// The cuBLAS attention's pointer arrays for B x T (attention_pointers), every
// layer's in one upload: layer l's at l * PKINDS * Bmax*H.
static void upload_attention_pointers(GpuModel *g, int B, int T)
{
    if (g->ptr_B == B && g->ptr_T == T) return;
    const Config *c = &g->alloc;
    int H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd;
    size_t per = (size_t)PKINDS * g->Bmax * H;
    void **hp = (void **)xmalloc((size_t)c->n_layers * per * sizeof(void *));
    for (int l = 0; l < c->n_layers; l++) {
        const LayerActs *a = &g->L[l];
        attention_pointers(hp + l * per, a->qr, a->kr, a->qkv + qd + kvd, qkv, g->S, g->P, a->ao, g->dao, g->dqr, g->dkh, g->dvh, B,
                           T, H, KV, hd);
    }
    copy_to_device(g->ptrs, hp, (size_t)c->n_layers * per * sizeof(void *), g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // before hp goes
    free(hp);
    g->ptr_B = B;
    g->ptr_T = T;
}
// Layer l's pointer arrays, the `ptrs` of attention_forward and attention_backward.
static void *const *attention_ptrs_of(const GpuModel *g, int l) { return g->ptrs + l * (size_t)PKINDS * g->Bmax * g->alloc.n_heads; }

// ---------------------------------------------------------------- MoE

// ---- expert parallelism: the rows to the ranks of their experts and back
// (model.h's ExpertExchange; route.h's plan, the CPU model's too). The
// rows travel from the main stream's buffers once it has finished with
// them; the received ones are put in computing order by a gather.

// Layer l's plan from its counts (h_offs, the sort's); the forward first
// exchanges the counts and uploads the received rows' order, offsets and
// tiles, which the backward reuses.
static void ep_plan(GpuModel *g, int l, int forward)
{
    const ExpertExchange *ep = g->ep;
    int S = ep->size, Eh = g->Eh;
    const int *offs = g->h_offs[l];
    LayerActs *a = &g->L[l];
    g->plan.roffs = g->h_roffs[l];
    if (forward) {
        for (int b = 0; b < S * Eh; b++) g->h_scnt[b] = offs[b + 1] - offs[b];
        ep->counts(ep->ctx, g->h_scnt, g->h_rcnt[l], Eh);
    }
    route_exchange_plan(&g->plan, offs, g->h_rcnt[l]);
    int R = g->h_roffs[l][Eh];
    if ((size_t)R > g->rmax) BUG("layer %d: %d rows for this rank's experts, the buffers hold %zu", l, R, g->rmax);
    if (!forward) return;
    route_exchange_perm(g->h_perm, g->h_perm + R, &g->plan, g->h_rcnt[l]);
    g->h_tiles[0] = 0;
    for (int i = 0; i < Eh; i++) g->h_tiles[i + 1] = g->h_tiles[i] + cdiv(g->h_roffs[l][i + 1] - g->h_roffs[l][i], g->tile_rows);
    copy_to_device(a->perm, g->h_perm, (size_t)R * sizeof(int), g->ctx);
    copy_to_device(a->inv, g->h_perm + R, (size_t)R * sizeof(int), g->ctx);
    copy_to_device(a->roffs, g->h_roffs[l], ((size_t)Eh + 1) * sizeof(int), g->ctx);
    copy_to_device(a->rtiles, g->h_tiles, ((size_t)Eh + 1) * sizeof(int), g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // h_perm and h_tiles are the next layer's
}

// Rows of row_bytes from send (this rank's sorted rows) to their experts'
// ranks, into recv in the order they arrive; `back` the other way.
static void ep_exchange(GpuModel *g, const void *send, void *recv, size_t row_bytes, int back)
{
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // send is written
    const int *to = back ? g->plan.rrows : g->plan.srows, *from = back ? g->plan.srows : g->plan.rrows;
    g->ep->rows(g->ep->ctx, send, to, recv, from, row_bytes);
}

// From the normed input ln2[N, d] of layer l into the next layer's input
// (h + the experts' combined outputs): router, sort, gather, experts, combine.
static void moe_forward(GpuModel *g, int l, int N, int k, const BalanceOptions *bo)
{
    const Config *c = &g->alloc;
    int d = c->d_model, de = c->d_expert, E = c->n_experts, A = N * k;
    LayerActs *a = &g->L[l];
    const LayerOffsets *o = &g->lo[l];
    const GpuCtx ctx = g->ctx;
    phase(g, PH_ROUTER);
    router_forward(a->z, a->p, a->lse, a->sel, bo->kind == BALANCE_TOP1_LBL ? a->q : NULL, a->scal, a->stats, a->ln2,
                   g->params_bf + o->router, balance_uses_bias(bo) ? g->bias + (size_t)l * E : NULL, N, d, E, k, bo->tau > 0 ? bo->tau : 1.0f,
                   ctx);
    phase(g, PH_SORT);
    if (g->paths.experts != EXPERTS_CUBLAS) {   // grouped and CUTLASS: the sort on the device
        grouped_route(a->order, a->row, a->offs, g->counts + (size_t)l * E, a->tiles, g->route_scratch, a->sel, A, E, g->tile_rows,
                      ctx.stream);
    } else {
        copy_to_host(g->h_sel[l], a->sel, (size_t)A * sizeof(int), ctx);
        int *order = g->h_order, *row = order + A;
        route_sort(order, row, g->h_offs[l], g->h_counts + (size_t)l * E, g->h_sel[l], A, E);
        copy_to_device(a->order, order, (size_t)A * sizeof(int), ctx);   // h_order is written again after the next layer's wait
        copy_to_device(a->row, row, (size_t)A * sizeof(int), ctx);
    }
    phase(g, PH_COMBINE);
    gather_forward(a->xe, a->ln2, a->order, A, d, k, ctx);
    phase(g, PH_EXPERTS);
    const bf16 *w = g->params_bf + o->expert;
    if (!g->ep) {
        experts_forward(a->ye, a->gu, a->act, a->xe, w, a->offs, a->tiles, g->tile_rows, g->h_offs[l], A, d, de, E, g->paths.experts,
                        &g->streams, g->cutlass, ctx);
    } else {
        if (g->paths.experts != EXPERTS_CUBLAS) copy_to_host(g->h_offs[l], a->offs, ((size_t)E + 1) * sizeof(int), ctx);
        ep_plan(g, l, 1);
        int R = g->h_roffs[l][g->Eh];
        ep_exchange(g, a->xe, g->xfer, (size_t)d * sizeof(bf16), 0);
        if (R) {
            gather_forward(a->xr, (const bf16 *)g->xfer, a->perm, R, d, 1, ctx);
            experts_forward(g->yr, a->gu, a->act, a->xr, w, a->roffs, a->rtiles, g->tile_rows, g->h_roffs[l], R, d, de, g->Eh,
                            g->paths.experts, &g->streams, g->cutlass, ctx);
            gather_forward((bf16 *)g->xfer, g->yr, a->inv, R, d, 1, ctx);
        }
        ep_exchange(g, g->xfer, a->ye, (size_t)d * sizeof(bf16), 1);
    }
    phase(g, PH_COMBINE);
    float *out = l + 1 < c->n_layers ? g->L[l + 1].x : g->x_final;
    combine_forward(out, a->h, a->ye, a->p, a->sel, a->row, N, d, E, k, ctx);
}

// The standard LBL's f_e: expert e's share of layer l's assignments, over
// this micro-batch (counts[E]) or over the global batch the caller supplied.
// The balance terms of layer l from its statistics (host), as model.c.
static void balance_losses(GpuModel *g, Losses *out, int l, int N, int k, const BalanceOptions *bo)
{
    int E = g->alloc.n_experts;
    const double *st = g->h_stats + (size_t)l * (2 * E + 3);
    const float *counts = g->h_counts + (size_t)l * E;
    if (balance_is_lbl(bo->kind)) {
        out->balance += (float)lbl_loss(bo, counts, st, l, N, k, E);
    } else if (bo->kind == BALANCE_TOP1_LBL) {
        double *fhat = g->balance_fhat + (size_t)l * E;
        for (int e = 0; e < E; e++) fhat[e] = st[E + e] / N;
        g->balance_pbar[l] = st[2 * E] / N;
        out->balance += (float)top1_lbl_loss(bo, fhat, g->balance_pbar[l], E);
    }
    if (bo->z_coef > 0) out->z += (float)z_loss(bo, st[2 * E + 1], N);
}

// The balance terms' per-expert coefficients of every layer, as model.c's
// balance_backward, from the forward's statistics: one upload before the
// backward rather than a host round trip in each layer's.
static void upload_balance_coefficients(GpuModel *g, float scale)
{
    const Config *c = &g->alloc;
    const BalanceOptions *bo = &g->bo;
    int N = g->B * g->T, E = c->n_experts;
    int have_lbl = balance_is_lbl(bo->kind), have_top1 = bo->kind == BALANCE_TOP1_LBL;
    memset(g->h_coef, 0, (size_t)c->n_layers * 2 * E * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        const float *counts = g->h_counts + (size_t)l * E;
        float *hc = g->h_coef + (size_t)l * 2 * E;
        g->h_gp[l] = 0;
        if (have_lbl)
            for (int e = 0; e < E; e++) hc[e] = (float)lbl_grad(bo, counts, l, e, N, g->kused[l], E, scale);
        if (have_top1) {
            double gf[MODEL_MAX_EXPERTS];
            double gp = top1_lbl_grads(gf, bo, g->balance_fhat + (size_t)l * E, g->balance_pbar[l], E, scale);
            for (int e = 0; e < E; e++) hc[E + e] = (float)gf[e];
            g->h_gp[l] = (float)(gp / N);
        }
    }
    if (have_lbl || have_top1) {
        copy_to_device(g->coef, g->h_coef, (size_t)c->n_layers * 2 * E * sizeof(float), g->ctx);
        CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // before the next backward writes h_coef
    }
}

// From dout[N, d] (the layer output's gradient) into du[N, d] (of the
// normed input) and the expert and router gradients.
static void moe_backward(GpuModel *g, int l, const float *dout, float scale)
{
    const Config *c = &g->alloc;
    int N = g->B * g->T, d = c->d_model, de = c->d_expert, E = c->n_experts, k = g->kused[l], A = N * k;
    LayerActs *a = &g->L[l];
    const LayerOffsets *o = &g->lo[l];
    const BalanceOptions *bo = &g->bo;
    const GpuCtx ctx = g->ctx;
    phase(g, PH_COMBINE);
    combine_backward(g->dye, g->dpsel, dout, a->ye, a->p, a->sel, a->row, N, d, E, k, ctx);
    phase(g, PH_EXPERTS);
    const bf16 *w = g->params_bf + o->expert;
    if (!g->ep) {
        experts_backward(g->dxe, g->grads + o->expert, g->dgu, g->dact, a->gu, a->act, g->dye, a->xe, w, a->offs, a->tiles,
                         g->tile_rows, g->h_offs[l], A, d, de, E, g->paths.recompute, g->paths.experts, &g->streams, g->cutlass, ctx);
    } else {
        ep_plan(g, l, 0);
        int R = g->h_roffs[l][g->Eh];
        ep_exchange(g, g->dye, g->xfer, (size_t)d * sizeof(bf16), 0);
        if (R) {   // an expert without rows gets no gradient
            gather_forward(g->dyr, (const bf16 *)g->xfer, a->perm, R, d, 1, ctx);
            experts_backward(g->dxr, g->grads + o->expert, g->dgu, g->dact, a->gu, a->act, g->dyr, a->xr, w, a->roffs, a->rtiles,
                             g->tile_rows, g->h_roffs[l], R, d, de, g->Eh, g->paths.recompute, g->paths.experts, &g->streams, g->cutlass,
                             ctx);
            gather_backward((float *)g->xfer, g->dxr, a->inv, R, d, 1, ctx);
        }
        ep_exchange(g, g->xfer, g->dxe, (size_t)d * sizeof(float), 1);
    }
    phase(g, PH_COMBINE);
    gather_backward(g->du, g->dxe, a->row, N, d, k, ctx);
    phase(g, PH_ROUTER);
    int have_lbl = balance_is_lbl(bo->kind), have_top1 = bo->kind == BALANCE_TOP1_LBL;
    const float *coef = g->coef + (size_t)l * 2 * E;
    float zc = bo->z_coef > 0 ? (float)(scale * bo->z_coef * 2.0 / N) : 0.0f;
    router_backward(g->du, g->grads + o->router, g->dz, g->dpsel, have_lbl ? coef : NULL, have_top1 ? coef + E : NULL, g->h_gp[l],
                    (bo->tau > 0 ? bo->tau : 1.0f) * N, zc, a->p, a->q, a->lse, a->sel, a->ln2, g->params_bf + o->router, N, d, E, k,
                    ctx);
}

// ---------------------------------------------------------------- forward

// Positions sorted by token, for the embedding's backward: sorted and
// uploaded with the inputs rather than as a host round trip in the middle of
// the backward.
static void upload_token_order(GpuModel *g, const uint32_t *inputs, int N)
{
    g->n_seg = route_sort_tokens(g->h_pos, g->h_seg, inputs, N);
    copy_to_device(g->emb_pos, g->h_pos, (size_t)N * sizeof(int), g->ctx);   // h_pos, h_seg: rewritten after this forward's wait
    copy_to_device(g->emb_seg, g->h_seg, ((size_t)g->n_seg + 1) * sizeof(int), g->ctx);
}

extern "C" Losses gpu_model_forward(GpuModel *g, const Config *cfg, const uint32_t *inputs, const uint32_t *targets,
                                    const float *mask, const int *pos, int B, int T, const BalanceOptions *bo,
                                    const float *expert_bias, float *counts)
{
    const Config *c = &g->alloc;
    const int N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, E = c->n_experts, V = c->vocab_size, L = c->n_layers;
    if (N > g->Bmax * g->Tmax || T > g->Tmax || B > g->Bmax)
        BUG("forward of %d x %d tokens, the buffers hold %d x %d", B, T, g->Bmax, g->Tmax);
    static const BalanceOptions none = {BALANCE_NONE, 0, 0, 0, NULL, NULL};
    if (!bo) bo = &none;
    if (pos) model_check_positions(pos, B, T);
    for (int n = 0; n < N; n++) {
        if (inputs[n] >= (uint32_t)V) die("token %u at position %d is outside the model's vocabulary of %d", inputs[n], n, V);
        if (targets && targets[n] >= (uint32_t)V) die("target %u at position %d is outside the model's vocabulary of %d", targets[n], n, V);
    }
    g->cfg = *cfg;
    g->B = B;
    g->T = T;
    g->bo = *bo;   // its global counts stay valid until the backward, as on the CPU
    g->have_mask = mask != NULL;
    g->have_pos = pos != NULL;
    g->have_forward = 0;
    const GpuCtx ctx = g->ctx;
    if (g->paths.attention == ATTENTION_CUBLAS) upload_attention_pointers(g, B, T);
    phase(g, PH_EMBED);
    // the caller's buffers: copied by the time of this function's last wait, before it returns
    copy_to_device(g->inputs, inputs, (size_t)N * sizeof(uint32_t), ctx);
    if (targets) {
        copy_to_device(g->targets, targets, (size_t)N * sizeof(uint32_t), ctx);
        upload_token_order(g, inputs, N);
    }
    if (mask) copy_to_device(g->mask, mask, (size_t)N * sizeof(float), ctx);
    if (pos) copy_to_device(g->pos, pos, (size_t)N * sizeof(int), ctx);   // kept for the backward
    const int *dpos = pos ? g->pos : NULL;
    if (balance_uses_bias(bo)) copy_to_device(g->bias, expert_bias, (size_t)L * E * sizeof(float), ctx);
    embedding_forward(g->L[0].x, g->inputs, g->params + g->embed, N, d, ctx);
    Losses out = {0, 0, 0, 0};
    for (int l = 0; l < L; l++) {
        LayerActs *a = &g->L[l];
        const LayerOffsets *o = &g->lo[l];
        int k = cfg->top_k[l];
        if (k > c->top_k[l]) BUG("layer %d at top-%d, the buffers hold top-%d", l, k, c->top_k[l]);
        g->kused[l] = k;
        // attention block
        phase(g, PH_NORM);
        rmsnorm_forward(a->ln1, a->r1, a->x, g->params + o->ln1, N, d, c->norm_eps, ctx);
        phase(g, PH_QKV);
        linear_forward(a->qkv, CUDA_R_16BF, a->ln1, g->params_bf + o->wqkv, N, d, qkv, 0.0f, ctx);
        qknorm_rope_forward(a->qr, a->qrs, a->qkv, qkv, g->params + o->qnorm, g->cosv, g->sinv, dpos, N, T, H, hd, c->norm_eps, ctx);
        qknorm_rope_forward(a->kr, a->krs, a->qkv + qd, qkv, g->params + o->knorm, g->cosv, g->sinv, dpos, N, T, KV, hd, c->norm_eps,
                            ctx);
        phase(g, PH_ATTN);
        attention_forward(a->ao, a->att_lse, g->S, g->P, a->qr, a->kr, a->qkv + qd + kvd, qkv, dpos, attention_ptrs_of(g, l), B, T, H,
                          KV, hd, g->paths.attention, g->cudnn, ctx);
        phase(g, PH_OPROJ);
        CUDA_CHECK(cudaMemcpyAsync(a->h, a->x, (size_t)N * d * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
        linear_forward(a->h, CUDA_R_32F, a->ao, g->params_bf + o->wo, N, qd, d, 1.0f, ctx);
        // MoE block
        phase(g, PH_NORM);
        rmsnorm_forward(a->ln2, a->r2, a->h, g->params + o->ln2, N, d, c->norm_eps, ctx);
        moe_forward(g, l, N, k, bo);
    }
    phase(g, PH_NORM);
    rmsnorm_forward(g->lnf, g->rf, g->x_final, g->params + g->norm, N, d, c->norm_eps, ctx);
    phase(g, PH_HEAD);
    linear_forward(g->logits, CUDA_R_32F, g->lnf, g->params_bf + g->head, N, d, V, 0.0f, ctx);
    phase(g, PH_LOSS);
    if (targets) {
        crossentropy_forward(g->lsef, g->rowloss, g->logits, g->targets, mask ? g->mask : NULL, N, V, ctx);
        copy_to_host(g->h_rowloss, g->rowloss, (size_t)N * sizeof(float), ctx);
        double loss = 0, msum = 0;
        for (int n = 0; n < N; n++) {
            loss += g->h_rowloss[n];
            msum += mask ? mask[n] : 1.0;
        }
        out.ce = msum > 0 ? (float)(loss / msum) : 0.0f;
        if (mask) memcpy(g->h_mask, mask, (size_t)N * sizeof(float));
    }
    g->have_forward = targets ? 2 : 1;
    g->sel_on_host = g->paths.experts == EXPERTS_CUBLAS;
    if (g->paths.experts != EXPERTS_CUBLAS) copy_to_host(g->h_counts, g->counts, (size_t)L * E * sizeof(float), ctx);
    copy_to_host(g->h_stats, g->stats, (size_t)L * (2 * E + 3) * sizeof(double), ctx);
    for (int l = 0; l < L; l++) balance_losses(g, &out, l, N, g->kused[l], bo);
    if (counts) memcpy(counts, g->h_counts, (size_t)L * E * sizeof(float));
    phase(g, -1);
    out.loss = out.ce + out.balance + out.z;
    return out;
}

extern "C" const float *gpu_model_logits(GpuModel *g)
{
    size_t n = (size_t)g->B * g->T * g->alloc.vocab_size;
    if (!g->h_logits) g->h_logits = (float *)xmalloc((size_t)g->Bmax * g->Tmax * g->alloc.vocab_size * sizeof(float));
    copy_to_host(g->h_logits, g->logits, n * sizeof(float), g->ctx);
    return g->h_logits;
}

extern "C" const int *gpu_model_selection(GpuModel *g, int layer, int *k)
{
    *k = g->kused[layer];
    if (!g->sel_on_host) {   // sorted on the device (grouped, CUTLASS): copied once, when asked
        for (int l = 0; l < g->alloc.n_layers; l++)
            copy_to_host(g->h_sel[l], g->L[l].sel, (size_t)g->B * g->T * g->kused[l] * sizeof(int), g->ctx);
        g->sel_on_host = 1;
    }
    return g->h_sel[layer];
}

// ---------------------------------------------------------------- backward

extern "C" void gpu_model_backward(GpuModel *g, float ce_scale, float aux_scale)
{
    const Config *c = &g->alloc;
    if (g->have_forward != 2) BUG("gpu_model_backward without a forward with targets");
    const int B = g->B, T = g->T, N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const int qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd, V = c->vocab_size;
    int have_mask = g->have_mask;
    const int *dpos = g->have_pos ? g->pos : NULL;   // the forward's positions
    const GpuCtx ctx = g->ctx;
    upload_balance_coefficients(g, aux_scale);   // first, while the stream is idle after the forward's last wait
    phase(g, PH_LOSS);
    double msum = 0;
    for (int n = 0; n < N; n++) msum += have_mask ? g->h_mask[n] : 1.0;
    crossentropy_backward(g->dlogits, g->logits, g->lsef, g->targets, have_mask ? g->mask : NULL,
                          msum > 0 ? (float)(ce_scale / msum) : 0.0f, N, V, ctx);
    phase(g, PH_HEAD);
    linear_backward(g->dln, 0.0f, g->grads + g->head, g->dlogits, g->lnf, g->params_bf + g->head, N, d, V, ctx);
    phase(g, PH_NORM);
    rmsnorm_backward(g->dx, NULL, g->grads + g->norm, g->norm_partial, NULL, g->dln, g->x_final, g->params + g->norm, g->rf, N, d,
                     ctx);

    for (int l = c->n_layers - 1; l >= 0; l--) {
        LayerActs *a = &g->L[l];
        const LayerOffsets *o = &g->lo[l];
        // x[l+1] = h + moe(rms(h))
        moe_backward(g, l, g->dx, aux_scale);
        phase(g, PH_NORM);
        rmsnorm_backward(g->dh, g->dh_bf, g->grads + o->ln2, g->norm_partial, g->dx, g->du, a->h, g->params + o->ln2, a->r2, N, d, ctx);
        // h = x + Wo . attention
        phase(g, PH_OPROJ);
        gemm(0, 0, N, qd, d, 1.0f, g->dh_bf, d, g->params_bf + o->wo, qd, 0.0f, g->dao, CUDA_R_16BF, qd, ctx);
        gemm(1, 0, d, qd, N, 1.0f, g->dh_bf, d, a->ao, qd, 1.0f, g->grads + o->wo, CUDA_R_32F, qd, ctx);
        phase(g, PH_ATTN);
        attention_backward(g->dqr, g->dkr, g->dqkv + qd + kvd, g->S, g->P, g->dkh, g->dvh, g->dao, a->ao, a->att_lse, a->qr, a->kr,
                           a->qkv + qd + kvd, qkv, dpos, attention_ptrs_of(g, l), B, T, H, KV, hd, g->paths.attention, g->cudnn, ctx);
        phase(g, PH_QKV);
        qknorm_rope_backward(g->dqkv, qkv, g->grads + o->qnorm, g->dn, g->norm_partial, g->dqr, a->qkv, a->qrs, g->params + o->qnorm,
                             g->cosv, g->sinv, dpos, N, T, H, hd, ctx);
        qknorm_rope_backward(g->dqkv + qd, qkv, g->grads + o->knorm, g->dn, g->norm_partial, g->dkr, a->qkv + qd, a->krs,
                             g->params + o->knorm, g->cosv, g->sinv, dpos, N, T, KV, hd, ctx);
        linear_backward(g->dln, 0.0f, g->grads + o->wqkv, g->dqkv, a->ln1, g->params_bf + o->wqkv, N, d, qkv, ctx);
        phase(g, PH_NORM);
        rmsnorm_backward(g->dx, NULL, g->grads + o->ln1, g->norm_partial, g->dh, g->dln, a->x, g->params + o->ln1, a->r1, N, d, ctx);
    }
    // the embedding: one block per distinct token sums its rows in position
    // order, from the order upload_token_order left
    phase(g, PH_EMBED);
    embedding_backward(g->grads + g->embed, g->dx, g->emb_pos, g->emb_seg, g->inputs, g->n_seg, d, ctx);
    phase(g, -1);
}

// ---------------------------------------------------------------- optimizer

extern "C" double gpu_model_grad_norm(GpuModel *g)
{
    phase(g, PH_OPT);
    double sq = 0;
    for (int i = 0; i < g->n_own; i++) {
        double norm = gradient_norm(g->norm_blocks, g->grads + g->own[i].lo, (long)(g->own[i].hi - g->own[i].lo), g->ctx);
        sq += norm * norm;
    }
    phase(g, -1);
    return sqrt(sq);
}

extern "C" void gpu_model_adamw(GpuModel *g, const AdamWStep *s)
{
    phase(g, PH_OPT);
    size_t n = g->owned, at = 0;
    for (int i = 0; i < g->n_own; at += g->own[i].hi - g->own[i].lo, i++)
        adamw_update(g->params, g->params_bf, g->moments + at, g->moments + n + at, g->grads, g->tensors, g->n_tensors, g->own[i].lo,
                     g->own[i].hi, s, g->ctx);
    phase(g, -1);
}

// ---------------------------------------------------------------- statistics, profile

extern "C" RouteSums gpu_model_route_sums(const GpuModel *g, int layer)
{
    const double *st = g->h_stats + (size_t)layer * (2 * g->alloc.n_experts + 3) + 2 * g->alloc.n_experts;
    RouteSums r = {(double)g->B * g->T, st[0], st[2]};   // scal's columns: first choice's p, lse^2, entropy
    return r;
}

extern "C" void gpu_model_profile(GpuModel *g, int on)
{
    g->prof = on;
    memset(g->prof_ms, 0, sizeof g->prof_ms);
    g->cur_phase = -1;
}

extern "C" void gpu_model_profile_print(GpuModel *g, FILE *f)
{
    double total = 0;
    for (int i = 0; i < PH_COUNT; i++) total += g->prof_ms[i];
    fprintf(f, "| phase | ms | share |\n| --- | ---: | ---: |\n");
    for (int i = 0; i < PH_COUNT; i++)
        fprintf(f, "| %s | %.2f | %.1f%% |\n", phase_name[i], g->prof_ms[i], total > 0 ? 100 * g->prof_ms[i] / total : 0.0);
    fprintf(f, "| total | %.2f | 100%% |\n", total);
}

extern "C" void gpu_profiler_range(int on) { CUDA_CHECK(on ? cudaProfilerStart() : cudaProfilerStop()); }

extern "C" double gpu_gemm_peak_tflops(int n)
{
    GpuCtx ctx;   // its own stream and handle: no model needed
    CUDA_CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&ctx.blas));
    CUBLAS_CHECK(cublasSetStream(ctx.blas, ctx.stream));
    bf16 *a, *b, *c;
    size_t sz = (size_t)n * n;
    CUDA_CHECK(cudaMalloc(&a, sz * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&b, sz * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&c, sz * sizeof(bf16)));
    float *tmp;
    CUDA_CHECK(cudaMalloc(&tmp, sz * sizeof(float)));
    CUDA_CHECK(cudaMemsetAsync(tmp, 0, sz * sizeof(float), ctx.stream));
    // random-looking data: zeros run faster than real numbers do
    float *h = (float *)xmalloc(sz * sizeof(float));
    uint64_t s = 1;
    for (size_t i = 0; i < sz; i++) h[i] = (float)((splitmix64(&s) >> 40) * 0x1.0p-24 - 0.5);
    copy_to_device(tmp, h, sz * sizeof(float), ctx);
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));   // before h goes
    free(h);
    to_bf16(a, tmp, (long)sz, ctx);
    to_bf16(b, tmp, (long)sz, ctx);
    for (int i = 0; i < 3; i++) gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, CUDA_R_16BF, n, ctx);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    const int reps = 10;
    CUDA_CHECK(cudaEventRecord(e0, ctx.stream));
    for (int i = 0; i < reps; i++) gemm(0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, CUDA_R_16BF, n, ctx);
    CUDA_CHECK(cudaEventRecord(e1, ctx.stream));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaFree(a));
    CUDA_CHECK(cudaFree(b));
    CUDA_CHECK(cudaFree(c));
    CUDA_CHECK(cudaFree(tmp));
    CUBLAS_CHECK(cublasDestroy(ctx.blas));
    CUDA_CHECK(cudaStreamDestroy(ctx.stream));
    return 2.0 * n * (double)n * n * reps / (ms * 1e-3) / 1e12;
}

// ---------------------------------------------------------------- inference: the key-value cache

// The device's half of a KvCache (model/kvcache.h): the keys and values
// (bf16, as the forward's k and v) and a step's scratch, one allocation. A
// step runs the forward's layer kernels over its new tokens only, in
// gpu_model_forward's order, with kvattention.cuh's attention against the
// cache and experts.cuh's per-row experts (no sort: a step's few rows go
// straight to their experts' weights). S = max_step tokens, A = S x the
// largest k.
typedef struct {
    bf16 *k, *v;               // [L, rows, KV, max_len, hd]
    float *cosv, *sinv;        // [max_len, hd/2]
    int *in;                   // [3S + rows]: tokens, rows, positions, the groups' last tokens (one upload)
    float *x, *h;              // [S, d] the residual stream, after the attention
    bf16 *ln;                  // [S, d] normed
    float *rs;                 // [S]
    bf16 *qkv;                 // [S, qd + 2 kvd]
    bf16 *qr, *kr;             // [S, qd], [S, kvd] normed and rotated
    float *qrs, *krs;          // [S*H], [S*KV]
    bf16 *ao;                  // [S, qd]
    float *z, *p, *lse, *scal; // [S, E], [S, E], [S], [S, 3]
    int *sel, *ident;          // [A] the router's choices; 0 .. A-1, combine's rows
    bf16 *act, *ye;            // [A, de], [A, d]
    bf16 *lnf;                 // [rows, d] the groups' last tokens, normed
    float *logits;             // [rows, V]
    float *bias;               // [L*E]
    char *base;
    int *h_in;                 // host: [3S + rows]
    float *h_logits;           // host: [rows, V]
} GpuKv;

static size_t kv_carve(GpuKv *s, const Config *c, const KvCache *kv, char *base)
{
    size_t S = kv->max_step, R = kv->rows, d = c->d_model, hd = c->head_dim, H = c->n_heads, KV = c->n_kv_heads;
    size_t qd = H * hd, kvd = KV * hd, E = c->n_experts, de = c->d_expert, L = c->n_layers, kmax = 0, off = 0;
    for (size_t l = 0; l < L; l++) kmax = (size_t)c->top_k[l] > kmax ? (size_t)c->top_k[l] : kmax;
    size_t A = S * kmax, cache = L * R * kvd * kv->max_len;
    AT(s->k, bf16, cache); AT(s->v, bf16, cache);
    AT(s->cosv, float, kv->max_len * hd / 2); AT(s->sinv, float, kv->max_len * hd / 2);
    AT(s->in, int, 3 * S + R);
    AT(s->x, float, S * d); AT(s->h, float, S * d); AT(s->ln, bf16, S * d); AT(s->rs, float, S);
    AT(s->qkv, bf16, S * (qd + 2 * kvd)); AT(s->qr, bf16, S * qd); AT(s->kr, bf16, S * kvd);
    AT(s->qrs, float, S * H); AT(s->krs, float, S * KV); AT(s->ao, bf16, S * qd);
    AT(s->z, float, S * E); AT(s->p, float, S * E); AT(s->lse, float, S); AT(s->scal, float, S * 3);
    AT(s->sel, int, A); AT(s->ident, int, A); AT(s->act, bf16, A * de); AT(s->ye, bf16, A * d);
    AT(s->lnf, bf16, R * d); AT(s->logits, float, R * c->vocab_size); AT(s->bias, float, L * E);
#undef AT
    return off;
}

extern "C" void gpu_model_kv_open(GpuModel *g, KvCache *kv, int verbose)
{
    const Config *c = &g->alloc;
    if (g->ep) die("inference with a key-value cache runs in one process holding every expert");
    GpuKv *s = (GpuKv *)xcalloc(1, sizeof *s);
    size_t bytes = kv_carve(s, c, kv, NULL);
    CUDA_CHECK(cudaMalloc(&s->base, bytes));
    kv_carve(s, c, kv, s->base);
    kv->bytes = (size_t)kv->rows * kv->max_len * c->n_layers * c->n_kv_heads * c->head_dim * 2 * sizeof(bf16);
    if (verbose) info("gpu memory: %-40s %9.3f GiB (the keys and values %.3f)", "key-value cache and a step's scratch", bytes / 1073741824.0,
                      kv->bytes / 1073741824.0);
    size_t half = c->head_dim / 2, A = 0;
    for (int l = 0; l < c->n_layers; l++) A = (size_t)c->top_k[l] > A ? (size_t)c->top_k[l] : A;
    A *= (size_t)kv->max_step;
    float *cs = (float *)xmalloc(kv->max_len * half * sizeof(float)), *sn = (float *)xmalloc(kv->max_len * half * sizeof(float));
    rope_tables(cs, sn, c, kv->max_len);
    int *ident = (int *)xmalloc(A * sizeof(int));
    for (size_t i = 0; i < A; i++) ident[i] = (int)i;
    copy_to_device(s->cosv, cs, kv->max_len * half * sizeof(float), g->ctx);
    copy_to_device(s->sinv, sn, kv->max_len * half * sizeof(float), g->ctx);
    copy_to_device(s->ident, ident, A * sizeof(int), g->ctx);
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));   // before the host buffers go
    free(cs);
    free(sn);
    free(ident);
    s->h_in = (int *)xmalloc((3 * (size_t)kv->max_step + kv->rows) * sizeof(int));
    s->h_logits = (float *)xmalloc((size_t)kv->rows * c->vocab_size * sizeof(float));
    kv->impl = s;
}

extern "C" void gpu_model_kv_free(GpuModel *g, KvCache *kv)
{
    GpuKv *s = (GpuKv *)kv->impl;
    if (!s) return;
    CUDA_CHECK(cudaStreamSynchronize(g->ctx.stream));
    CUDA_CHECK(cudaFree(s->base));
    free(s->h_in);
    free(s->h_logits);
    free(s);
    kv->impl = NULL;
}

extern "C" const float *gpu_model_step(GpuModel *g, KvCache *kv, const Config *cfg, const uint32_t *tokens, const int *rows, int n,
                                       const BalanceOptions *bo, const float *expert_bias)
{
    GpuKv *s = (GpuKv *)kv->impl;
    const Config *c = &g->alloc;
    const int d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd, qkv = qd + 2 * kvd;
    const int E = c->n_experts, de = c->d_expert, V = c->vocab_size, L = c->n_layers, S = kv->max_step, W = kv->max_len;
    const GpuCtx ctx = g->ctx;
    int *h_tok = s->h_in, *h_rows = s->h_in + S, *h_pos = s->h_in + 2 * S, *h_last = s->h_in + 3 * S;
    int groups = kv_plan(kv, rows, n, h_pos, h_last);
    for (int t = 0; t < n; t++) {
        if (tokens[t] >= (uint32_t)V) die("token %u is outside the model's vocabulary of %d", tokens[t], V);
        h_tok[t] = (int)tokens[t];
        h_rows[t] = rows[t];
    }
    copy_to_device(s->in, s->h_in, (3 * (size_t)S + kv->rows) * sizeof(int), ctx);   // h_in waits for this step's copy_to_host
    const uint32_t *d_tok = (const uint32_t *)s->in;
    const int *d_rows = s->in + S, *d_pos = s->in + 2 * S, *d_last = s->in + 3 * S;
    int with_bias = balance_uses_bias(bo);
    if (with_bias) copy_to_device(s->bias, expert_bias, (size_t)L * E * sizeof(float), ctx);
    embedding_forward(s->x, d_tok, g->params + g->embed, n, d, ctx);
    for (int l = 0; l < L; l++) {
        const LayerOffsets *o = &g->lo[l];
        int k = cfg->top_k[l];
        if (k > c->top_k[l]) BUG("layer %d at top-%d, the buffers hold top-%d", l, k, c->top_k[l]);
        size_t at = (size_t)l * kv->rows * kvd * W;
        // attention block: the new keys and values join the cache first, so that a prefill's tokens see each other
        rmsnorm_forward(s->ln, s->rs, s->x, g->params + o->ln1, n, d, c->norm_eps, ctx);
        linear_forward(s->qkv, CUDA_R_16BF, s->ln, g->params_bf + o->wqkv, n, d, qkv, 0.0f, ctx);
        qknorm_rope_forward(s->qr, s->qrs, s->qkv, qkv, g->params + o->qnorm, s->cosv, s->sinv, d_pos, n, W, H, hd, c->norm_eps, ctx);
        qknorm_rope_forward(s->kr, s->krs, s->qkv + qd, qkv, g->params + o->knorm, s->cosv, s->sinv, d_pos, n, W, KV, hd, c->norm_eps,
                            ctx);
        kv_append(s->k + at, s->v + at, s->kr, s->qkv + qd + kvd, qkv, d_rows, d_pos, n, KV, hd, W, ctx);
        attention_cached_forward(s->ao, s->qr, s->k + at, s->v + at, d_rows, d_pos, n, H, KV, hd, W, ctx);
        CUDA_CHECK(cudaMemcpyAsync(s->h, s->x, (size_t)n * d * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
        linear_forward(s->h, CUDA_R_32F, s->ao, g->params_bf + o->wo, n, qd, d, 1.0f, ctx);
        // MoE block
        rmsnorm_forward(s->ln, s->rs, s->h, g->params + o->ln2, n, d, c->norm_eps, ctx);
        router_select(s->z, s->p, s->lse, s->sel, s->scal, s->ln, g->params_bf + o->router, with_bias ? s->bias + (size_t)l * E : NULL, n,
                      d, E, k, ctx);
        experts_rows_forward(s->ye, s->act, s->ln, g->params_bf + o->expert, s->sel, n * k, k, d, de, ctx);
        combine_forward(s->x, s->h, s->ye, s->p, s->sel, s->ident, n, d, E, k, ctx);
    }
    // the head, over each row's last token only
    rmsnorm_forward(s->ln, s->rs, s->x, g->params + g->norm, n, d, c->norm_eps, ctx);
    gather_forward(s->lnf, s->ln, d_last, groups, d, 1, ctx);
    linear_forward(s->logits, CUDA_R_32F, s->lnf, g->params_bf + g->head, groups, d, V, 0.0f, ctx);
    copy_to_host(s->h_logits, s->logits, (size_t)groups * V * sizeof(float), ctx);
    return s->h_logits;
}
