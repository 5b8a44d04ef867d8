/* Fused causal grouped-query attention on the GPU (flash.cu), for head
 * sizes 16, 32, 64, 96 and 128; gpu_model.cu falls back to cuBLAS products
 * with a materialised score matrix for others.
 * Layouts, N = B*T tokens: q, out, dq [N, H*hd]; k [N, KV*hd]; v [N, *]
 * with row stride ldv; lse [B*H*T] (log-sum-exp of each row of scaled
 * scores); dkh, dvh [B*H, T, hd] per query head (fp32; the caller sums each
 * KV head's group); D [N*H] scratch. */
#ifndef SIGMA_FLASH_H
#define SIGMA_FLASH_H

#include <cuda_bf16.h>

#ifdef __cplusplus
extern "C" {
#endif

int flash_supported(int hd);
void flash_attention_forward(__nv_bfloat16 *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                             const __nv_bfloat16 *v, int ldv, int B, int T, int H, int KV, int hd);
void flash_attention_backward(__nv_bfloat16 *dq, float *dkh, float *dvh, float *D, const __nv_bfloat16 *dout,
                              const __nv_bfloat16 *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                              const __nv_bfloat16 *v, int ldv, const float *lse, int B, int T, int H, int KV, int hd);

#ifdef __cplusplus
}
#endif

#endif
