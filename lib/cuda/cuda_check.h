// The CUDA runtime's check that dies naming the file and line, alone: for
// common.cuh and for the host-side translation units that cannot include
// it (cudnn_attention.cu goes through the host compiler).
#ifndef SIGMA_CUDA_CHECK_H
#define SIGMA_CUDA_CHECK_H

#include <cuda_runtime.h>

extern "C" {
#include "base/base.h"
}

static inline void cuda_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e != cudaSuccess) die_at(file, line, "CUDA: %s: %s", what, cudaGetErrorString(e));
}
#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)

#endif
