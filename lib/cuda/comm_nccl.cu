// The collectives of comm.h over NCCL, on the GPU each rank computes with:
// one communicator over all ranks, its unique id made by rank 0 and
// broadcast over MPI, the calls on a stream of their own after the model's
// work has finished (no overlap with the backward yet). A rank that died
// leaves the others waiting on a collective: they poll NCCL's asynchronous
// error and give up after SIGMA_COMM_TIMEOUT seconds (default 300) with a
// message, instead of hanging.
#include <nccl.h>

#include "cuda/common.cuh"

#include <stdlib.h>

extern "C" {
#include "base/base.h"
#include "comm/comm.h"
}

#define NCCL_CHECK(call)                                                                                   \
    do {                                                                                                   \
        ncclResult_t r_ = (call);                                                                          \
        if (r_ != ncclSuccess) die("%s:%d: %s: %s", __FILE__, __LINE__, #call, ncclGetErrorString(r_));      \
    } while (0)

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    int rank, size;
    double timeout;            // seconds a collective may take
} Nccl;

// Waits for the stream, watching for a peer's failure.
static void nccl_wait(Nccl *n, const char *what)
{
    double t0 = now_seconds();
    for (;;) {
        cudaError_t e = cudaStreamQuery(n->stream);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady) die("%s: %s", what, cudaGetErrorString(e));
        ncclResult_t async;
        NCCL_CHECK(ncclCommGetAsyncError(n->comm, &async));
        if (async != ncclSuccess || now_seconds() - t0 > n->timeout) {
            ncclCommAbort(n->comm);
            die("rank %d: %s: %s (another rank stopped?)", n->rank, what,
                async != ncclSuccess ? ncclGetErrorString(async) : "no answer within SIGMA_COMM_TIMEOUT seconds");
        }
    }
}

static void nccl_allreduce(void *impl, float *buf, size_t count)
{
    Nccl *n = (Nccl *)impl;
    CUDA_CHECK(cudaDeviceSynchronize());   // the model's streams are done with buf
    NCCL_CHECK(ncclAllReduce(buf, buf, count, ncclFloat, ncclSum, n->comm, n->stream));
    nccl_wait(n, "all-reduce");
}

// Shards of unequal length (comm_shard_begin): a reduce or a broadcast per
// rank, grouped into one launch.
static void nccl_reduce_scatter(void *impl, float *buf, size_t count)
{
    Nccl *n = (Nccl *)impl;
    CUDA_CHECK(cudaDeviceSynchronize());
    NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < n->size; r++) {
        size_t b = comm_shard_begin(count, r, n->size), e = comm_shard_begin(count, r + 1, n->size);
        NCCL_CHECK(ncclReduce(buf + b, buf + b, e - b, ncclFloat, ncclSum, r, n->comm, n->stream));
    }
    NCCL_CHECK(ncclGroupEnd());
    nccl_wait(n, "reduce-scatter");
}

static void nccl_allgather(void *impl, float *buf, size_t count)
{
    Nccl *n = (Nccl *)impl;
    CUDA_CHECK(cudaDeviceSynchronize());
    NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < n->size; r++) {
        size_t b = comm_shard_begin(count, r, n->size), e = comm_shard_begin(count, r + 1, n->size);
        NCCL_CHECK(ncclBroadcast(buf + b, buf + b, e - b, ncclFloat, r, n->comm, n->stream));
    }
    NCCL_CHECK(ncclGroupEnd());
    nccl_wait(n, "all-gather");
}

// Grouped sends and receives, one per peer with rows to move (the rows to
// itself included: NCCL copies those).
static void nccl_alltoallv(void *impl, const void *send, const size_t *send_n, void *recv, const size_t *recv_n)
{
    Nccl *n = (Nccl *)impl;
    CUDA_CHECK(cudaDeviceSynchronize());
    NCCL_CHECK(ncclGroupStart());
    size_t so = 0, ro = 0;
    for (int r = 0; r < n->size; r++) {
        if (send_n[r]) NCCL_CHECK(ncclSend((const char *)send + so, send_n[r], ncclUint8, r, n->comm, n->stream));
        if (recv_n[r]) NCCL_CHECK(ncclRecv((char *)recv + ro, recv_n[r], ncclUint8, r, n->comm, n->stream));
        so += send_n[r];
        ro += recv_n[r];
    }
    NCCL_CHECK(ncclGroupEnd());
    nccl_wait(n, "all-to-all");
}

static Nccl *nccl_new(Comm *c)
{
    Nccl *n = (Nccl *)xcalloc(1, sizeof *n);
    n->rank = comm_rank(c);
    n->size = comm_size(c);
    const char *t = getenv("SIGMA_COMM_TIMEOUT");
    n->timeout = t && atof(t) > 0 ? atof(t) : 300;
    CUDA_CHECK(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    return n;
}

static CommBackend nccl_split(void *impl, Comm *child, int color, int key);

static void nccl_close(void *impl)
{
    Nccl *n = (Nccl *)impl;
    NCCL_CHECK(ncclCommDestroy(n->comm));
    CUDA_CHECK(cudaStreamDestroy(n->stream));
    free(n);
}

static const CommOps nccl_ops = {"nccl", nccl_allreduce, nccl_reduce_scatter, nccl_allgather, nccl_alltoallv, nccl_split, nccl_close};

// A group's communicator from its parent's (collective over the parent).
static CommBackend nccl_split(void *impl, Comm *child, int color, int key)
{
    Nccl *n = nccl_new(child);
    NCCL_CHECK(ncclCommSplit(((Nccl *)impl)->comm, color, key, &n->comm, NULL));
    return CommBackend{&nccl_ops, n};
}

extern "C" CommBackend nccl_backend_open(Comm *c)
{
    Nccl *n = nccl_new(c);
    ncclUniqueId id;
    if (n->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    comm_broadcast(c, &id, sizeof id);
    NCCL_CHECK(ncclCommInitRank(&n->comm, n->size, id, n->rank));
    return CommBackend{&nccl_ops, n};
}
