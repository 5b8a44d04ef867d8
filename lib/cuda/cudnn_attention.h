/* Causal grouped-query attention through cuDNN (cudnn_attention.cu): the
 * fused scaled dot-product attention of cuDNN 9's graph API, forward and
 * backward, bf16 in and out, fp32 softmax statistics, on the model's own
 * layouts (sdpa_plan.h); the layouts and the log-sum-exp are flash.h's,
 * so either can stand in for the other. libcudnn.so.9 is loaded when the
 * attention is created, not when the program starts, so the tools run
 * without it; on a GPU machine it may be PyTorch's (scripts/gpu-run). Each
 * shape's two execution plans are built once and cached. The backward is
 * cuDNN's deterministic one: the same inputs give the same bits.
 * Everything runs on `stream`. No packed rows: the caller takes the fused
 * kernels of flash.h for those. */
#ifndef SIGMA_CUDNN_ATTENTION_H
#define SIGMA_CUDNN_ATTENTION_H

#include <stddef.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudnnAttention CudnnAttention;

/* Whether cuDNN's fused attention takes heads of hd elements. */
int cudnn_attention_supported(int hd);
/* libcudnn loaded and checked, a handle, and the plans of the largest
 * shape (B x T, H query and KV key-value heads of hd, v ldv elements from
 * one token to the next) built; NULL, with the reason in why[n], where
 * this build has no cuDNN, libcudnn.so.9 is missing or of another major
 * version, or cuDNN has no plan for the shape. Prints the version loaded
 * when verbose. */
CudnnAttention *cudnn_attention_create(int B, int T, int H, int KV, int hd, int ldv, int verbose, char *why, size_t n);
void cudnn_attention_free(CudnnAttention *a);

/* out[N, H*hd] and lse[B*H*T] from q[N, H*hd], k[N, KV*hd], v (row stride ldv). */
void cudnn_attention_forward(CudnnAttention *a, __nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                             const __nv_bfloat16 *v, int ldv, int B, int T, int H, int KV, int hd, cudaStream_t stream);
/* dq, dk and dv (dv at row stride ldv; dk, dv summed over each group) from
 * dout, with out and lse as the forward left them. */
void cudnn_attention_backward(CudnnAttention *a, __nv_bfloat16 *dq, __nv_bfloat16 *dk, __nv_bfloat16 *dv, const __nv_bfloat16 *dout,
                              const __nv_bfloat16 *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                              int ldv, const float *lse, int B, int T, int H, int KV, int hd, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
