/* Fused causal grouped-query attention on the GPU (flash.cu), for head
 * sizes 16, 32, 64, 96 and 128 (flash_supported); for others the model
 * takes the cuBLAS products around a materialised score matrix
 * (attention.cuh). The kernels run on `stream`.
 * Layouts, N = B*T tokens: q, out, dq [N, H*hd]; k, dk [N, KV*hd]; v, dv
 * [N, *] with row stride ldv (only each row's first KV*hd are written); lse
 * [B*H*T] (log-sum-exp of each row of scaled scores); D [N*H] scratch. dk
 * and dv are the sums over each KV head's group of query heads. pos [N]
 * (device), or NULL: each token's position in its document in packed rows
 * (model.h), a query then seeing only its document's keys. */
#ifndef SIGMA_FLASH_H
#define SIGMA_FLASH_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

int flash_supported(int hd);
void flash_attention_forward(__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                             const __nv_bfloat16 *v, int ldv, const int *pos, int B, int T, int H, int KV, int hd,
                             cudaStream_t stream);
void flash_attention_backward(__nv_bfloat16 *dq, __nv_bfloat16 *dk, __nv_bfloat16 *dv, float *D, const __nv_bfloat16 *dout,
                              const __nv_bfloat16 *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                              const __nv_bfloat16 *v, int ldv, const float *lse, const int *pos, int B, int T, int H, int KV,
                              int hd, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
