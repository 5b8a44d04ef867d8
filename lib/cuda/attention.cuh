// Causal grouped-query attention, forward and backward, by either path
// (AttentionPath, chosen once in gpu_model_create):
//   ATTENTION_CUBLAS: cuBLAS batched products per (sequence, head) around a
//     causal softmax kernel, through a materialised score matrix; the
//     scores recomputed in backward.
//   ATTENTION_FLASH: the fused kernels of flash.cu, for the head sizes of
//     flash_supported (16, 32, 64, 96, 128).
//   ATTENTION_CUDNN: cuDNN's fused attention (cudnn_attention.cu), through
//     a CudnnAttention the model made; packed rows (pos) go to flash.cu's
//     kernels, which cuDNN's causal mask cannot stand in for, so the model
//     takes this path only where flash_supported holds too.
// Each way only each row's log-sum-exp is kept between forward and
// backward. N = B*T tokens, qd = H*hd, kvd = KV*hd.
#ifndef SIGMA_CUDA_ATTENTION_CUH
#define SIGMA_CUDA_ATTENTION_CUH

#include "cuda/common.cuh"
#include "cuda/cudnn_attention.h"
#include "cuda/flash.h"
#include "cuda/matmul.cuh"

extern "C" {
#include "model/device.h"
}

// ---------------------------------------------------------------- kernels

// The first key that query t of row b may see: its document's first,
// t - pos[b*T + t] in packed rows (model.h), else 0.
__device__ static inline int attention_first_key(const int *pos, long b, int t, int T) { return pos ? t - pos[b * T + t] : 0; }

// One row (b, h, t) per block: the causal softmax of scores S (already
// scaled) over the keys [first, t] of the query's document (pos[B*T] or
// NULL: attention_first_key), probabilities P (bf16, exactly zero outside
// them) and lse.
static __global__ void attention_softmax_forward_kernel(bf16 *P, float *lse, const float *S, const int *pos, int H, int T)
{
    long row = blockIdx.x;
    int t = (int)(row % T), first = attention_first_key(pos, row / T / H, t, T);
    const float *s = S + row * T;
    bf16 *p = P + row * T;
    float mx = -INFINITY;
    for (int j = first + threadIdx.x; j <= t; j += blockDim.x) mx = fmaxf(mx, s[j]);
    mx = block_reduce<true>(mx);
    float sum = 0;
    for (int j = first + threadIdx.x; j <= t; j += blockDim.x) sum += expf(s[j] - mx);
    sum = block_reduce<false>(sum);
    float l = mx + logf(sum);
    if (threadIdx.x == 0) lse[row] = l;
    for (int j = threadIdx.x; j < T; j += blockDim.x) p[j] = __float2bfloat16(first <= j && j <= t ? expf(s[j] - l) : 0.0f);
}

// Backward, first half: P recomputed from the scores and lse, zero outside
// the keys [first, t] as in the forward.
static __global__ void attention_probs_kernel(bf16 *P, const float *S, const float *lse, const int *pos, int H, int T)
{
    long row = blockIdx.x;
    int t = (int)(row % T), first = attention_first_key(pos, row / T / H, t, T);
    for (int j = threadIdx.x; j < T; j += blockDim.x)
        P[row * T + j] = __float2bfloat16(first <= j && j <= t ? expf(S[row * T + j] - lse[row]) : 0.0f);
}
// Second half: dS = P (dP - sum_j P_j dP_j), written over P. Where P is
// zero (keys before the query's document in packed rows) so is dS: the
// sum over j <= t takes them at no weight, and nothing here needs pos.
static __global__ void attention_softmax_backward_kernel(bf16 *P_dS, const float *dP, int T)
{
    long row = blockIdx.x;
    int t = (int)(row % T);
    bf16 *p = P_dS + row * T;
    const float *dp = dP + row * T;
    float dot = 0;
    for (int j = threadIdx.x; j <= t; j += blockDim.x) dot += to_f(p[j]) * dp[j];
    dot = block_reduce<false>(dot);
    for (int j = threadIdx.x; j < T; j += blockDim.x) p[j] = __float2bfloat16(j <= t ? to_f(p[j]) * (dp[j] - dot) : 0.0f);
}

// dkv[N, KV*hd] (bf16, row stride ld) = the sum over each KV head's group of
// query heads of per-head gradients dh[B, H, T, hd] (fp32), in head order.
static __global__ void group_sum_kernel(bf16 *dkv, int ld, const float *dh, int B, int T, int H, int KV, int hd)
{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i >= (long)B * T * KV * hd) return;
    int c = (int)(i % hd), kh = (int)(i / hd % KV), t = (int)(i / ((long)hd * KV) % T), b = (int)(i / ((long)hd * KV * T));
    int group = H / KV;
    float s = 0;
    for (int g = 0; g < group; g++) s += dh[(((long)b * H + kh * group + g) * T + t) * hd + c];
    dkv[((long)b * T + t) * ld + kh * hd + c] = __float2bfloat16(s);
}

// ---------------------------------------------------------------- the cuBLAS path's pointer arrays

// The batched products' operands, 10 kinds of B*H pointers, one per
// (sequence, head), kind k's at k * B*H: Q, K, V, S, P, O, dO, dQ, dKh, dVh.
enum { PQ, PK, PV, PS, PP, PO, PDO, PDQ, PDK, PDV, PKINDS };

// ptrs[PKINDS * B*H] (host) for one layer's tensors: q, out, dout, dq
// [N, qd]; k [N, kvd]; v [N, kvd] at row stride ldv; the scratch S, P
// [B*H, T, T] and dkh, dvh [B*H, T, hd]. Uploaded, they are the `ptrs`
// of attention_forward and attention_backward.
static void attention_pointers(void **ptrs, const bf16 *q, const bf16 *k, const bf16 *v, int ldv, const float *S, const bf16 *P,
                               const bf16 *out, const bf16 *dout, const bf16 *dq, const float *dkh, const float *dvh, int B, int T,
                               int H, int KV, int hd)
{
    int qd = H * hd, kvd = KV * hd, group = H / KV;
    size_t BH = (size_t)B * H;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t i = (size_t)b * H + h, kh = h / group;
            ptrs[PQ * BH + i] = (void *)(q + (size_t)b * T * qd + h * hd);
            ptrs[PK * BH + i] = (void *)(k + (size_t)b * T * kvd + kh * hd);
            ptrs[PV * BH + i] = (void *)(v + (size_t)b * T * ldv + kh * hd);
            ptrs[PS * BH + i] = (void *)(S + i * T * T);
            ptrs[PP * BH + i] = (void *)(P + i * T * T);
            ptrs[PO * BH + i] = (void *)(out + (size_t)b * T * qd + h * hd);
            ptrs[PDO * BH + i] = (void *)(dout + (size_t)b * T * qd + h * hd);
            ptrs[PDQ * BH + i] = (void *)(dq + (size_t)b * T * qd + h * hd);
            ptrs[PDK * BH + i] = (void *)(dkh + i * T * hd);
            ptrs[PDV * BH + i] = (void *)(dvh + i * T * hd);
        }
}
static void *const *attention_ptrs(void *const *ptrs, int kind, int B, int H) { return ptrs + (size_t)kind * B * H; }
#define KIND(kind) (const void *const *)attention_ptrs(ptrs, kind, B, H)

// S[B*H, T, T] = scale Q K^T per (sequence, head), in forward and again in backward.
static void attention_scores(void *const *ptrs, int B, int T, int H, int KV, int hd, GpuCtx ctx)
{
    gemm_batched(0, 1, T, T, hd, 1.0f / sqrtf((float)hd), KIND(PQ), H * hd, KIND(PK), KV * hd, 0.0f,
                 attention_ptrs(ptrs, PS, B, H), CUDA_R_32F, T, B * H, ctx);
}

// ---------------------------------------------------------------- launchers

// out[N, qd] (bf16) from q[N, qd], k[N, kvd] and v (bf16, [N, kvd] at row
// stride ldv); lse[B*H*T] kept for the backward. S = scale Q K^T, P =
// causal softmax(S), O = P V, per (sequence, head), the KV head shared by
// its group; pos[N] (device, or NULL) the tokens' positions in their
// documents in packed rows: each query sees only its own document's keys. The cuBLAS path's scratch: S[B*H, T, T], P[B*H, T, T] and the
// layer's uploaded pointer arrays ptrs[PKINDS * B*H] (attention_pointers,
// made for these tensors); the fused paths use none of them. cudnn: the
// model's CudnnAttention (ATTENTION_CUDNN), or NULL.
static void attention_forward(bf16 *out, float *lse, float *S, bf16 *P, const bf16 *q, const bf16 *k, const bf16 *v, int ldv,
                              const int *pos, void *const *ptrs, int B, int T, int H, int KV, int hd, AttentionPath path,
                              CudnnAttention *cudnn, GpuCtx ctx)
{
    int qd = H * hd, BH = B * H;
    if (path == ATTENTION_CUDNN && !pos) {
        cudnn_attention_forward(cudnn, out, lse, q, k, v, ldv, B, T, H, KV, hd, ctx.stream);
        return;
    }
    if (path != ATTENTION_CUBLAS) {   // flash, and cuDNN's packed rows
        flash_attention_forward(out, lse, q, k, v, ldv, pos, B, T, H, KV, hd, ctx.stream);
        return;
    }
    attention_scores(ptrs, B, T, H, KV, hd, ctx);
    LAUNCH(attention_softmax_forward_kernel, BH * T, 256, 0, ctx.stream, P, lse, S, pos, H, T);
    LAUNCHED();
    gemm_batched(0, 0, T, hd, T, 1.0f, KIND(PP), T, KIND(PV), ldv, 0.0f, attention_ptrs(ptrs, PO, B, H), CUDA_R_16BF, qd, BH, ctx);
}

// dq[N, qd], dk[N, kvd] and dv (bf16, [N, kvd] at row stride ldv) from
// dout[N, qd], with out, lse, q, k, v, pos as in the forward. Scratch: S
// ([B*H, T, T] scores, then dP; with the fused paths D[N*H]), and for the
// cuBLAS path P ([B*H, T, T] probabilities, then dS), dkh, dvh
// [B*H, T, hd] (per query head) and ptrs as in the forward.
static void attention_backward(bf16 *dq, bf16 *dk, bf16 *dv, float *S, bf16 *P, float *dkh, float *dvh, const bf16 *dout,
                               const bf16 *out, const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int ldv,
                               const int *pos, void *const *ptrs, int B, int T, int H, int KV, int hd, AttentionPath path,
                               CudnnAttention *cudnn, GpuCtx ctx)
{
    int qd = H * hd, kvd = KV * hd, BH = B * H;
    float scale = 1.0f / sqrtf((float)hd);
    if (path == ATTENTION_CUDNN && !pos) {   // as the forward went; sums each group's dK and dV itself
        cudnn_attention_backward(cudnn, dq, dk, dv, dout, out, q, k, v, ldv, lse, B, T, H, KV, hd, ctx.stream);
        return;
    }
    if (path != ATTENTION_CUBLAS) {   // flash, and cuDNN's packed rows: sums each group's dK and dV itself
        flash_attention_backward(dq, dk, dv, S, dout, out, q, k, v, ldv, lse, pos, B, T, H, KV, hd, ctx.stream);
        return;
    }
    attention_scores(ptrs, B, T, H, KV, hd, ctx);
    LAUNCH(attention_probs_kernel, BH * T, 256, 0, ctx.stream, P, S, lse, pos, H, T);
    LAUNCHED();
    // dV_h = P^T dO;  dP = dO V^T (over S);  dS = P (dP - rowsum) (over P)
    gemm_batched(1, 0, T, hd, T, 1.0f, KIND(PP), T, KIND(PDO), qd, 0.0f, attention_ptrs(ptrs, PDV, B, H), CUDA_R_32F, hd, BH, ctx);
    gemm_batched(0, 1, T, T, hd, 1.0f, KIND(PDO), qd, KIND(PV), ldv, 0.0f, attention_ptrs(ptrs, PS, B, H), CUDA_R_32F, T, BH, ctx);
    LAUNCH(attention_softmax_backward_kernel, BH * T, 256, 0, ctx.stream, P, S, T);
    LAUNCHED();
    // dQ = scale dS K;  dK_h = scale dS^T Q
    gemm_batched(0, 0, T, hd, T, scale, KIND(PP), T, KIND(PK), kvd, 0.0f, attention_ptrs(ptrs, PDQ, B, H), CUDA_R_16BF, qd, BH,
                 ctx);
    gemm_batched(1, 0, T, hd, T, scale, KIND(PP), T, KIND(PQ), qd, 0.0f, attention_ptrs(ptrs, PDK, B, H), CUDA_R_32F, hd, BH, ctx);
    long n = (long)B * T * kvd;
    LAUNCH(group_sum_kernel, cdiv(n, 256), 256, 0, ctx.stream, dk, kvd, dkh, B, T, H, KV, hd);
    LAUNCH(group_sum_kernel, cdiv(n, 256), 256, 0, ctx.stream, dv, ldv, dvh, B, T, H, KV, hd);
    LAUNCHED();
}

#undef KIND

#endif
