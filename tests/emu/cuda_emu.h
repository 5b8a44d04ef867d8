// A CPU emulation of the CUDA that sigma's kernels use, so that their logic
// (tiles, fragments, pipelines, bounds, and the CUDA model around them) is
// tested on a machine without a GPU. Forced into a host C++ build of the
// CUDA sources (g++ -include tests/emu/cuda_emu.h -x c++ lib/cuda/*.cu).
//
// Each thread of a block is a fiber on one OS thread (started by ucontext,
// switched by _setjmp/_longjmp, which leave the signal mask alone and so
// cost no system call). Fibers switch only at barriers: __syncthreads is a
// barrier over the block, the warp-wide instructions one over the warp, and
// a barrier that some threads never reach (a lane that returned early from
// a shuffle, a __syncthreads in divergent code) is reported as a deadlock
// rather than hanging. The warp-wide instructions compute what the PTX ISA
// defines from all 32 lanes' operands: ldmatrix (lane l addresses row l % 8
// of matrix l / 8; register i of lane l holds row l / 4, columns 2 (l % 4)
// and the next, of matrix i, or of its transpose), mma.m16n8k16 with the
// ISA's fragment layouts, and shuffles.
//
// cp.async copies land either at the wait_group that covers them (the latest
// the hardware may; emu::cp_late) or at once (the earliest). Blocks run one
// after another and their threads round-robin; emu::skewed runs the blocks
// in reverse and lets the last warp run as far ahead as the barriers allow.
// Late copies expose a missing wait; early ones with the skewed schedule a
// stage refilled while another warp still reads it, or a block writing past
// its own tile. Dynamic shared memory starts as 0xff bytes (NaN) in every
// block.
//
// Shared-memory bank conflicts of ldmatrix and cp.async are counted (8
// lanes' 16-byte accesses per wavefront, 32 banks of 4 bytes), so a test
// can hold a kernel's layout to one wavefront per phase.
//
// Launches are checked as the hardware would refuse them: more than 1024
// threads, grid y or z beyond 65535, more dynamic shared memory than 48 KiB
// or than cudaFuncSetAttribute allowed (at most 227 KiB), misaligned
// ldmatrix and cp.async addresses. Device memory is host memory; the
// runtime calls sigma makes are plain copies, done as they are issued;
// cuBLAS's two products are computed column-major as cuBLAS defines them,
// fp32 accumulation. So the whole CUDA model (gpu_model.cu) runs here too.
//
// Not emulated: timing, concurrency between streams (all work runs in issue
// order, so a missing event between streams goes unnoticed here), memory
// ordering beyond barriers, global atomics on floats, register limits,
// anything sigma's kernels do not use.
#ifndef SIGMA_CUDA_EMU_H
#define SIGMA_CUDA_EMU_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <ucontext.h>
#include <unordered_map>
#include <vector>

#define SIGMA_EMU 1

namespace emu {

struct Copy {
    void *dst;
    const void *src;
    bool valid;
};

enum { RUNNABLE, WAITING, DONE };

struct Thread {
    ucontext_t ctx;            // where it starts
    jmp_buf jb;                // where it left off
    char *stack;
    int state, waiting_on, started;
    uint3 idx;
    int linear;
    unsigned mma_calls;                      // this thread's mma_bf16 so far: the warp's product is computed once per call
    unsigned cp_calls;                       // its cp_async16 so far: the warp's k-th calls are one instruction
    std::vector<std::vector<Copy>> groups;   // committed cp.async groups, oldest first
    std::vector<Copy> open;                  // issued since the last commit
};

const size_t stack_bytes = 256 * 1024;
inline std::vector<Thread *> threads;   // a pool: the first block_threads are this block's
inline int block_threads;
inline Thread *cur;
inline jmp_buf scheduler;
inline std::function<void()> body;
inline dim3 grid_dim, block_dim;
inline uint3 block_idx;
inline std::vector<unsigned char> dyn_smem;
inline std::vector<int> arrivals;   // [1 + warps]: the block's barrier, then each warp's
inline bool cp_late = true;
inline bool skewed = false;
// what lanes hand each other in the warp-wide instructions: [warp][lane][8 words]
inline std::vector<uint64_t> exchange;
struct WarpProduct {
    unsigned call;      // the mma call it belongs to
    float d[16][8];     // A . B
};
inline std::vector<WarpProduct> products;   // [warp]

// Shared-memory bank conflicts of the 16-byte accesses (ldmatrix rows,
// cp.async destinations): the hardware serves them 8 lanes at a time, one
// wavefront if those 8 hit distinct banks (32 banks of 4 bytes), one more
// for each further distinct word on the busiest bank. The extra wavefronts
// are counted, for tests to require none: [0] ldmatrix, [1] cp.async.
inline long bank_phases[2], bank_extra[2];
inline void bank_phase(int kind, const uintptr_t *addr, int n)
{
    int words[32] = {0};
    uintptr_t seen[8 * 4];
    int n_seen = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) {
            uintptr_t w = addr[i] / 4 + j;
            bool dup = false;
            for (int s = 0; s < n_seen; s++) dup |= seen[s] == w;
            if (dup) continue;
            seen[n_seen++] = w;
            words[w % 32]++;
        }
    int most = 0;
    for (int b = 0; b < 32; b++) most = std::max(most, words[b]);
    bank_phases[kind]++;
    bank_extra[kind] += most > 1 ? most - 1 : 0;
}
// A warp's k-th cp.async, by (warp, k), until all its lanes have issued it.
struct PendingStore {
    uintptr_t addr[32];
    unsigned lanes;
};
inline std::unordered_map<uint64_t, PendingStore> pending_stores;
inline void store_phases(const PendingStore &p)
{
    for (int q = 0; q < 4; q++) {
        uintptr_t a[8];
        int n = 0;
        for (int l = 8 * q; l < 8 * q + 8; l++)
            if (p.lanes >> l & 1) a[n++] = p.addr[l];
        if (n) bank_phase(1, a, n);
    }
}

[[noreturn]] inline void fail(const char *what)
{
    fprintf(stderr, "cuda emulation: %s (block %u,%u,%u thread %d)\n", what, block_idx.x, block_idx.y, block_idx.z,
            cur ? cur->linear : -1);
    abort();
}

inline int lane() { return cur->linear % 32; }
inline int warp() { return cur->linear / 32; }
inline uint64_t *slot(int w, int l) { return &exchange[((size_t)w * 32 + l) * 8]; }

// Wait until `expected` threads reached barrier `id` (0: the block, 1 + w: warp w).
inline void barrier(int id, int expected)
{
    if (++arrivals[id] == expected) {
        arrivals[id] = 0;
        int lo = id ? (id - 1) * 32 : 0, hi = id ? lo + 32 : block_threads;   // a warp's lanes, or the block
        for (int i = lo; i < hi; i++)
            if (threads[i]->state == WAITING && threads[i]->waiting_on == id) threads[i]->state = RUNNABLE;
        return;
    }
    cur->state = WAITING;
    cur->waiting_on = id;
    if (!_setjmp(cur->jb)) _longjmp(scheduler, 1);
}
inline void warp_barrier()
{
    if (block_threads % 32) fail("a warp-wide instruction in a block that is not whole warps");
    barrier(1 + warp(), 32);
}

// A fiber runs the kernel for one block after another: started once, it
// waits between blocks where it ended.
inline void fiber_main()
{
    for (;;) {
        body();
        if (!cur->open.empty() || !cur->groups.empty()) fail("cp.async copies still pending when the thread ended");
        cur->state = DONE;
        if (!_setjmp(cur->jb)) _longjmp(scheduler, 1);
    }
}

// Runs t until it waits or ends.
__attribute__((noinline)) inline void resume(Thread *t)
{
    cur = t;
    if (!_setjmp(scheduler)) {
        if (t->started) _longjmp(t->jb, 1);
        t->started = 1;
        setcontext(&t->ctx);
    }
}

inline void run_block()
{
    int n = block_threads = (int)(block_dim.x * block_dim.y * block_dim.z);
    while ((int)threads.size() < n) {
        Thread *t = new Thread();
        t->stack = (char *)malloc(stack_bytes);
        getcontext(&t->ctx);
        t->ctx.uc_stack.ss_sp = t->stack;
        t->ctx.uc_stack.ss_size = stack_bytes;
        t->ctx.uc_link = nullptr;   // fiber_main never returns
        makecontext(&t->ctx, fiber_main, 0);
        threads.push_back(t);
    }
    arrivals.assign(1 + (n + 31) / 32, 0);
    exchange.assign((size_t)((n + 31) / 32) * 32 * 8, 0);
    products.assign((n + 31) / 32, WarpProduct{~0u, {}});
    std::fill(dyn_smem.begin(), dyn_smem.end(), 0xff);
    for (int i = 0; i < n; i++) {
        Thread &t = *threads[i];
        t.state = RUNNABLE;
        t.mma_calls = 0;
        t.cp_calls = 0;
        t.linear = i;
        t.idx = make_uint3(i % block_dim.x, i / block_dim.x % block_dim.y, i / (block_dim.x * block_dim.y));
        t.groups.clear();
        t.open.clear();
    }
    for (int done = 0; done < n;) {
        bool ran = false;
        for (int i = 0; i < n; i++) {
            Thread &t = *threads[skewed ? n - 1 - i : i];
            if (t.state != RUNNABLE) continue;
            resume(&t);
            ran = true;
            done += t.state == DONE;
            if (skewed) break;   // start over from the top: the last warp runs as far ahead as barriers let it
        }
        if (!ran) fail("deadlock: threads wait at a barrier that others of their block or warp never reach");
    }
    for (auto &p : pending_stores) store_phases(p.second);   // instructions some lanes skipped
    pending_stores.clear();
    cur = nullptr;
}

// Dynamic shared memory a kernel may ask for: 48 KiB, or what
// cudaFuncSetAttribute allowed it, up to the 227 KiB of a Hopper SM.
inline std::vector<std::pair<const void *, size_t>> smem_allowed;
inline void allow_smem(const void *kernel, size_t bytes)
{
    if (bytes > 227 * 1024) fail("cudaFuncSetAttribute: more than 227 KiB of shared memory");
    smem_allowed.push_back({kernel, bytes});
}

template <class F> void launch(const void *entry, dim3 grid, dim3 block, size_t smem, F kernel)
{
    if (block.x * block.y * block.z > 1024) fail("more than 1024 threads in a block");
    if (grid.y > 65535 || grid.z > 65535) fail("a grid's y or z beyond 65535");
    size_t allowed = 48 * 1024;
    for (auto &a : smem_allowed)
        if (a.first == entry) allowed = std::max(allowed, a.second);
    if (smem > allowed) fail("a launch asks for more dynamic shared memory than the kernel was allowed");
    grid_dim = grid;
    block_dim = block;
    dyn_smem.assign(smem + 16, 0xff);
    body = kernel;
    unsigned blocks = grid.x * grid.y * grid.z;
    for (unsigned b = 0; b < blocks; b++) {
        unsigned i = skewed ? blocks - 1 - b : b;
        block_idx = make_uint3(i % grid.x, i / grid.x % grid.y, i / (grid.x * grid.y));
        run_block();
    }
}

inline float bits_float(uint32_t w)
{
    float f;
    memcpy(&f, &w, sizeof f);
    return f;
}
inline float bf16_lo(uint32_t w) { return bits_float(w << 16); }
inline float bf16_hi(uint32_t w) { return bits_float(w & 0xffff0000u); }
inline uint32_t pack(const __nv_bfloat16 *lo, const __nv_bfloat16 *hi)
{
    uint16_t a, b;
    memcpy(&a, lo, 2);
    memcpy(&b, hi, 2);
    return (uint32_t)a | (uint32_t)b << 16;
}

// An address's offset in the block's shared memory (banks count from there).
inline uintptr_t smem_offset(const void *p)
{
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)dyn_smem.data();
    return a >= base && a < base + dyn_smem.size() ? a - base : a;
}
inline void shared_store16(void *dst)
{
    int w = warp(), l = lane();
    PendingStore &p = pending_stores[(uint64_t)w << 32 | cur->cp_calls++];
    p.addr[l] = smem_offset(dst);
    p.lanes |= 1u << l;
    if (p.lanes == 0xffffffffu) {
        store_phases(p);
        pending_stores.erase((uint64_t)w << 32 | (cur->cp_calls - 1));
    }
}

}   // namespace emu

// ---- what kernels see
#define threadIdx (emu::cur->idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)
#define DYNAMIC_SMEM(type, name) type *name = (type *)(void *)emu::dyn_smem.data()
#define LAUNCH(kernel, grid, block, smem, stream, ...) \
    ((void)(stream), emu::launch((const void *)(kernel), dim3(grid), dim3(block), (smem), [=] { kernel(__VA_ARGS__); }))
using std::max;
using std::min;

inline void __syncthreads() { emu::barrier(0, emu::block_threads); }
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    if (mask != 0xffffffffu) emu::fail("__syncwarp on part of a warp");
    emu::warp_barrier();
}
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
[[noreturn]] inline void __trap() { emu::fail("__trap"); }
inline float __expf(float x) { return expf(x); }
inline int atomicAdd(int *p, int v)   // fibers switch only at barriers: already atomic
{
    int old = *p;
    *p = old + v;
    return old;
}
template <class T> T __shfl_xor_sync(unsigned mask, T v, int o)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "a shuffle of at most 8 bytes");
    if (mask != 0xffffffffu) emu::fail("__shfl_xor_sync on part of a warp");
    int w = emu::warp(), l = emu::lane();
    memcpy(emu::slot(w, l), &v, sizeof v);
    emu::warp_barrier();
    T r;
    memcpy(&r, emu::slot(w, l ^ o), sizeof r);
    emu::warp_barrier();
    return r;
}

// ---- lib/cuda/ptx.cuh's instructions
inline void cp_async16(void *dst, const void *src, bool valid)
{
    if ((uintptr_t)dst % 16 || (valid && (uintptr_t)src % 16)) emu::fail("cp.async of 16 bytes at an address not 16-byte aligned");
    emu::Copy c = {dst, src, valid};
    emu::shared_store16(dst);
    if (!emu::cp_late) {
        if (valid) memcpy(dst, src, 16);
        else memset(dst, 0, 16);
    } else {
        emu::cur->open.push_back(c);
    }
}
inline void cp_async_commit(void)
{
    emu::cur->groups.push_back(emu::cur->open);
    emu::cur->open.clear();
}
template <int N> inline void cp_async_wait(void)
{
    auto &g = emu::cur->groups;
    while ((int)g.size() > N) {
        for (const emu::Copy &c : g.front()) {
            if (c.valid) memcpy(c.dst, c.src, 16);
            else memset(c.dst, 0, 16);
        }
        g.erase(g.begin());
    }
}
template <bool TRANS> inline void ldmatrix_x4(uint32_t r[4], const __nv_bfloat16 *p)
{
    int w = emu::warp(), l = emu::lane();
    if ((uintptr_t)p % 16) emu::fail("ldmatrix: a row address not 16-byte aligned");
    emu::slot(w, l)[0] = (uint64_t)(uintptr_t)p;
    emu::warp_barrier();
    if (l == 0)
        for (int i = 0; i < 4; i++) {   // matrix i in one phase: lanes 8i .. 8i+7's rows
            uintptr_t a[8];
            for (int j = 0; j < 8; j++) a[j] = emu::smem_offset((const void *)(uintptr_t)emu::slot(w, 8 * i + j)[0]);
            emu::bank_phase(0, a, 8);
        }
    for (int i = 0; i < 4; i++) {
        // matrix i's rows come from lanes 8i .. 8i+7; element (row, col) of it:
        auto at = [&](int row, int col) { return (const __nv_bfloat16 *)(uintptr_t)emu::slot(w, 8 * i + row)[0] + col; };
        int a = l / 4, b = 2 * (l % 4);
        r[i] = TRANS ? emu::pack(at(b, a), at(b + 1, a)) : emu::pack(at(a, b), at(a, b + 1));
    }
    emu::warp_barrier();
}
inline void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2])
{
    int w = emu::warp(), l = emu::lane();
    uint64_t *s = emu::slot(w, l);
    for (int i = 0; i < 4; i++) s[i] = a[i];
    s[4] = b[0];
    s[5] = b[1];
    emu::warp_barrier();
    // the ISA's fragments: lane L = 4g + t holds A rows g and g + 8 at columns
    // 2t, 2t+1 (registers 0, 1) and 2t+8, 2t+9 (registers 2, 3); B column g
    // at rows 2t, 2t+1 (register 0) and 2t+8, 2t+9 (register 1); C rows g,
    // g + 8 at columns 2t, 2t+1.
    auto A = [&](int row, int k) {
        int L = 4 * (row % 8) + (k % 8) / 2, reg = row / 8 + 2 * (k / 8);
        uint32_t v = (uint32_t)emu::slot(w, L)[reg];
        return k % 2 ? emu::bf16_hi(v) : emu::bf16_lo(v);
    };
    auto B = [&](int k, int col) {
        int L = 4 * col + (k % 8) / 2, reg = 4 + k / 8;
        uint32_t v = (uint32_t)emu::slot(w, L)[reg];
        return k % 2 ? emu::bf16_hi(v) : emu::bf16_lo(v);
    };
    emu::WarpProduct &P = emu::products[w];
    if (P.call != emu::cur->mma_calls) {   // the first lane to get here computes the warp's product
        float a_[16][16], b_[16][8];
        for (int r = 0; r < 16; r++)
            for (int k = 0; k < 16; k++) a_[r][k] = A(r, k);
        for (int k = 0; k < 16; k++)
            for (int n = 0; n < 8; n++) b_[k][n] = B(k, n);
        for (int r = 0; r < 16; r++)
            for (int n = 0; n < 8; n++) {
                float sum = 0;
                for (int k = 0; k < 16; k++) sum += a_[r][k] * b_[k][n];
                P.d[r][n] = sum;
            }
        P.call = emu::cur->mma_calls;
    }
    emu::cur->mma_calls++;
    int g = l / 4, t = l % 4;
    float d[4];
    for (int i = 0; i < 4; i++) d[i] = c[i] + P.d[g + 8 * (i / 2)][2 * t + i % 2];
    emu::warp_barrier();
    for (int i = 0; i < 4; i++) c[i] = d[i];
}

// ---- the runtime, on host memory
inline cudaError_t emu_ok(void) { return cudaSuccess; }
#define cudaMalloc emu_cudaMalloc
#define cudaFree emu_cudaFree
#define cudaMemcpy(dst, src, n, kind) (memcpy((void *)(dst), (const void *)(src), (n)), cudaSuccess)
#define cudaMemset(p, v, n) (memset((void *)(p), (v), (n)), cudaSuccess)
#define cudaDeviceSynchronize() emu_ok()
#define cudaGetLastError() emu_ok()
#define cudaGetErrorString(e) "(emulated)"
#define cudaFuncSetAttribute(kernel, attr, bytes) (emu::allow_smem((const void *)(kernel), (bytes)), cudaSuccess)
#define cudaGetDeviceCount(n) (*(n) = 1, cudaSuccess)
#define cudaGetDevice(d) (*(d) = 0, cudaSuccess)
#define cudaSetDevice(d) emu_ok()
// Streams and events: one sequence of work, done as it is issued, so every
// ordering between streams holds already.
#define cudaMemcpyAsync(dst, src, n, ...) (memcpy((void *)(dst), (const void *)(src), (n)), cudaSuccess)
#define cudaMemsetAsync(p, v, n, ...) (memset((void *)(p), (v), (n)), cudaSuccess)
#define cudaStreamCreate(s) (*(s) = nullptr, cudaSuccess)
#define cudaStreamCreateWithFlags(s, flags) (*(s) = nullptr, cudaSuccess)
#define cudaStreamDestroy(s) emu_ok()
#define cudaStreamSynchronize(s) emu_ok()
#define cudaStreamQuery(s) emu_ok()
#define cudaStreamWaitEvent(s, e, flags) emu_ok()
#define cudaEventCreate(e) (*(e) = nullptr, cudaSuccess)
#define cudaEventCreateWithFlags(e, flags) (*(e) = nullptr, cudaSuccess)
#define cudaEventDestroy(e) emu_ok()
#define cudaProfilerStart() emu_ok()
#define cudaProfilerStop() emu_ok()
#define cudaEventRecord(...) emu_ok()
#define cudaEventSynchronize(e) emu_ok()
#define cudaEventElapsedTime(ms, a, b) (*(ms) = 0.0f, cudaSuccess)
#define cudaGetDeviceProperties(p, dev) emu_device_properties(p)
inline cudaError_t emu_device_properties(cudaDeviceProp *p)
{
    memset(p, 0, sizeof *p);
    strcpy(p->name, "CPU emulation");
    p->major = 9;
    p->totalGlobalMem = (size_t)1 << 34;
    return cudaSuccess;
}
template <class T> cudaError_t emu_cudaMalloc(T **p, size_t n)
{
    *p = (T *)aligned_alloc(256, (n + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t emu_cudaFree(void *p)
{
    free(p);
    return cudaSuccess;
}


// ---- cuBLAS: the two products sigma uses, column-major as cuBLAS defines
// them, bf16 operands, fp32 accumulation, bf16 or fp32 results
namespace emu {
inline char handle_tag;
inline float load(const void *p, cudaDataType t, size_t i)
{
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    if (t != CUDA_R_16BF) fail("cuBLAS emulation: an operand type other than bf16 and fp32");
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
// C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, column-major
inline void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const void *A, cudaDataType at,
                 int lda, const void *B, cudaDataType bt, int ldb, float beta, void *C, cudaDataType ct, int ldc)
{
    std::vector<float> a((size_t)m * k), b((size_t)k * n), col(m);
    for (int l = 0; l < k; l++)
        for (int i = 0; i < m; i++) a[(size_t)l * m + i] = load(A, at, ta == CUBLAS_OP_N ? i + (size_t)l * lda : l + (size_t)i * lda);
    for (int j = 0; j < n; j++)
        for (int l = 0; l < k; l++) b[(size_t)j * k + l] = load(B, bt, tb == CUBLAS_OP_N ? l + (size_t)j * ldb : j + (size_t)l * ldb);
    for (int j = 0; j < n; j++) {
        std::fill(col.begin(), col.end(), 0.0f);
        for (int l = 0; l < k; l++) {
            float bv = b[(size_t)j * k + l];
            const float *ac = &a[(size_t)l * m];
            for (int i = 0; i < m; i++) col[i] += ac[i] * bv;
        }
        for (int i = 0; i < m; i++) {
            size_t at_c = i + (size_t)j * ldc;
            float v = alpha * col[i] + (beta != 0.0f ? beta * load(C, ct, at_c) : 0.0f);
            if (ct == CUDA_R_32F) ((float *)C)[at_c] = v;
            else ((__nv_bfloat16 *)C)[at_c] = __float2bfloat16(v);
        }
    }
}
}   // namespace emu
#undef cublasCreate
#undef cublasDestroy
#undef cublasSetStream
#define cublasCreate(h) (*(h) = (cublasHandle_t)(void *)&emu::handle_tag, CUBLAS_STATUS_SUCCESS)
#define cublasDestroy(h) ((void)(h), CUBLAS_STATUS_SUCCESS)
#define cublasSetStream(h, s) ((void)(h), CUBLAS_STATUS_SUCCESS)
#define cublasGemmEx(h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, compute, algo)                        \
    (emu::gemm(ta, tb, m, n, k, *(const float *)(alpha), A, at, lda, B, bt, ldb, *(const float *)(beta), C, ct, ldc),         \
     CUBLAS_STATUS_SUCCESS)
#define cublasGemmBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, B, bt, ldb, beta, C, ct, ldc, count, compute, algo)          \
    ([&] {                                                                                                                     \
        for (int i_ = 0; i_ < (count); i_++)                                                                                   \
            emu::gemm(ta, tb, m, n, k, *(const float *)(alpha), ((const void *const *)(A))[i_], at, lda,                      \
                      ((const void *const *)(B))[i_], bt, ldb, *(const float *)(beta), ((void *const *)(C))[i_], ct, ldc);     \
        return CUBLAS_STATUS_SUCCESS;                                                                                          \
    }())

#endif
