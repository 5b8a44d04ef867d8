/* The experts' products through CUTLASS (cutlass_experts.cu): the sm90
 * grouped GEMM of CUTLASS 3 (pointer arrays, TMA loads, warp-specialised
 * warpgroup MMA, a persistent scheduler), which reads every expert's
 * problem size from device memory, so that a layer never waits for the
 * host. The products and their layouts are grouped.cuh's; the problems are
 * route_plan.h's route_gemm, written on the device from the sorted offsets
 * offs[E+1] (grouped_route) by a kernel of one thread per expert. Each
 * output tile is one thread block's, its sum over k in one order, with no
 * split: deterministic. Needs an sm_90 GPU (H100, H200: the kernels are
 * compiled for sm_90a), row widths k and n multiples of 8 and 16-byte
 * aligned operands. Everything runs on `stream`. */
#ifndef SIGMA_CUTLASS_EXPERTS_H
#define SIGMA_CUTLASS_EXPERTS_H

#include <stddef.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CutlassExperts CutlassExperts;

/* The three kernels, initialised once for E experts, with their argument
 * arrays on the device. NULL, with the reason in why[n], where this build
 * has no CUTLASS kernels or this GPU cannot run them. */
CutlassExperts *cutlass_experts_create(int E, char *why, size_t n);
void cutlass_experts_free(CutlassExperts *c);
/* Whether the products handle rows of k and n elements. */
int cutlass_experts_supported(int k, int n);

/* For each expert e over its sorted rows offs[e] .. offs[e+1], w_e = w + e * w_stride ([n, k]):
 *   out[rows, n] (bf16) = inp[rows, k] . w_e^T */
void cutlass_linear_forward(CutlassExperts *c, __nv_bfloat16 *out, const __nv_bfloat16 *inp, const __nv_bfloat16 *w, long w_stride,
                            const int *offs, int E, int k, int n, cudaStream_t stream);
/*   dinp[rows, k] (fp32) = dout[rows, n] . w_e */
void cutlass_linear_backward_input(CutlassExperts *c, float *dinp, const __nv_bfloat16 *dout, const __nv_bfloat16 *w,
                                   long w_stride, const int *offs, int E, int k, int n, cudaStream_t stream);
/*   dw_e[n, k] (fp32) += dout[rows, n]^T . inp[rows, k], dw_e = dw + e * w_stride; an expert
 *   without rows is left as it is */
void cutlass_linear_backward_weight(CutlassExperts *c, float *dw, long w_stride, const __nv_bfloat16 *dout,
                                    const __nv_bfloat16 *inp, const int *offs, int E, int k, int n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
