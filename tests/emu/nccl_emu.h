// NCCL emulated over MPI for the CPU emulation of CUDA (cuda_emu.h), so
// that the NCCL backend of comm.h (lib/cuda/comm_nccl.cu) runs under mpirun
// on a machine without a GPU: device memory is host memory here, and each
// NCCL collective becomes the MPI one that computes the same thing, issued
// at once (a group's calls in order, the same on every rank). Forced into
// the emulated build after cuda_emu.h; nccl.h's own types are kept.
// Not emulated: asynchrony (every call has finished when it returns) and
// asynchronous errors (a dead peer ends the job through mpirun instead).
#ifndef SIGMA_NCCL_EMU_H
#define SIGMA_NCCL_EMU_H

#include <nccl.h>
#include <string.h>

#ifdef SIGMA_MPI
#include <mpi.h>
#endif

struct ncclComm {
    int rank, size;
};

static inline ncclResult_t emu_ncclGetUniqueId(ncclUniqueId *id)
{
    memset(id, 0, sizeof *id);
    return ncclSuccess;
}

static inline ncclResult_t emu_ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId, int rank)
{
    *comm = new ncclComm{rank, nranks};
    return ncclSuccess;
}

static inline ncclResult_t emu_ncclCommDestroy(ncclComm_t comm) { delete comm; return ncclSuccess; }
static inline ncclResult_t emu_ncclCommAbort(ncclComm_t comm) { delete comm; return ncclSuccess; }
static inline ncclResult_t emu_ncclCommGetAsyncError(ncclComm_t, ncclResult_t *e) { *e = ncclSuccess; return ncclSuccess; }
static inline ncclResult_t emu_ncclGroupStart(void) { return ncclSuccess; }
static inline ncclResult_t emu_ncclGroupEnd(void) { return ncclSuccess; }

#ifdef SIGMA_MPI
static inline ncclResult_t emu_mpi(int rc) { return rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError; }
static inline ncclResult_t emu_ncclAllReduce(const void *send, void *recv, size_t n, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                                             cudaStream_t)
{
    return emu_mpi(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
}
static inline ncclResult_t emu_ncclReduce(const void *send, void *recv, size_t n, ncclDataType_t, ncclRedOp_t, int root,
                                          ncclComm_t comm, cudaStream_t)
{
    int in_place = send == recv && comm->rank == root;
    return emu_mpi(MPI_Reduce(in_place ? MPI_IN_PLACE : send, recv, (int)n, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD));
}
static inline ncclResult_t emu_ncclBroadcast(const void *, void *buf, size_t n, ncclDataType_t, int root, ncclComm_t,
                                             cudaStream_t)
{
    return emu_mpi(MPI_Bcast(buf, (int)n, MPI_FLOAT, root, MPI_COMM_WORLD));
}
#else
// without MPI there is one process: the collectives leave the buffer as it is
static inline ncclResult_t emu_ncclAllReduce(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t) { return ncclSuccess; }
static inline ncclResult_t emu_ncclReduce(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, int, ncclComm_t, cudaStream_t) { return ncclSuccess; }
static inline ncclResult_t emu_ncclBroadcast(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) { return ncclSuccess; }
#endif

#define ncclGetUniqueId emu_ncclGetUniqueId
#define ncclCommInitRank emu_ncclCommInitRank
#define ncclCommDestroy emu_ncclCommDestroy
#define ncclCommAbort emu_ncclCommAbort
#define ncclCommGetAsyncError emu_ncclCommGetAsyncError
#define ncclGroupStart emu_ncclGroupStart
#define ncclGroupEnd emu_ncclGroupEnd
#define ncclAllReduce emu_ncclAllReduce
#define ncclReduce emu_ncclReduce
#define ncclBroadcast emu_ncclBroadcast
#define ncclGetErrorString(r) "(emulated NCCL error)"

#endif
