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
#ifdef SIGMA_MPI
    MPI_Comm mc;               // the world's, or a split's own
#endif
};

static inline ncclResult_t emu_ncclGetUniqueId(ncclUniqueId *id)
{
    memset(id, 0, sizeof *id);
    return ncclSuccess;
}

static inline ncclResult_t emu_ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId, int rank)
{
    *comm = new ncclComm();
    (*comm)->rank = rank;
    (*comm)->size = nranks;
#ifdef SIGMA_MPI
    (*comm)->mc = MPI_COMM_WORLD;   // the backend opens over every rank
#endif
    return ncclSuccess;
}

static inline ncclResult_t emu_ncclCommDestroy(ncclComm_t comm)
{
#ifdef SIGMA_MPI
    if (comm->mc != MPI_COMM_WORLD) MPI_Comm_free(&comm->mc);
#endif
    delete comm;
    return ncclSuccess;
}
static inline ncclResult_t emu_ncclCommAbort(ncclComm_t comm) { return emu_ncclCommDestroy(comm); }
static inline ncclResult_t emu_ncclCommGetAsyncError(ncclComm_t, ncclResult_t *e) { *e = ncclSuccess; return ncclSuccess; }

#ifdef SIGMA_MPI
static inline ncclResult_t emu_mpi(int rc) { return rc == MPI_SUCCESS ? ncclSuccess : ncclSystemError; }

static inline ncclResult_t emu_ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t *out, ncclConfig_t *)
{
    *out = new ncclComm();
    if (MPI_Comm_split(comm->mc, color, key, &(*out)->mc) != MPI_SUCCESS) return ncclSystemError;
    MPI_Comm_rank((*out)->mc, &(*out)->rank);
    MPI_Comm_size((*out)->mc, &(*out)->size);
    return ncclSuccess;
}

// A group's sends and receives are posted as they come, without waiting,
// and waited for together at its end, as NCCL fuses them.
enum { EMU_MAX_P2P = 4096 };
static MPI_Request emu_p2p[EMU_MAX_P2P];
static int emu_n_p2p;
static inline ncclResult_t emu_post(int rc)
{
    if (rc != MPI_SUCCESS || emu_n_p2p == EMU_MAX_P2P) return ncclSystemError;
    emu_n_p2p++;
    return ncclSuccess;
}
static inline MPI_Datatype emu_type(ncclDataType_t t) { return t == ncclFloat ? MPI_FLOAT : MPI_BYTE; }   // the two sigma sends
static inline ncclResult_t emu_ncclSend(const void *buf, size_t n, ncclDataType_t t, int peer, ncclComm_t comm, cudaStream_t)
{
    return emu_post(MPI_Isend(buf, (int)n, emu_type(t), peer, 0, comm->mc, &emu_p2p[emu_n_p2p]));
}
static inline ncclResult_t emu_ncclRecv(void *buf, size_t n, ncclDataType_t t, int peer, ncclComm_t comm, cudaStream_t)
{
    return emu_post(MPI_Irecv(buf, (int)n, emu_type(t), peer, 0, comm->mc, &emu_p2p[emu_n_p2p]));
}
static inline ncclResult_t emu_ncclGroupStart(void) { return ncclSuccess; }
static inline ncclResult_t emu_ncclGroupEnd(void)
{
    int rc = MPI_Waitall(emu_n_p2p, emu_p2p, MPI_STATUSES_IGNORE);
    emu_n_p2p = 0;
    return emu_mpi(rc);
}
static inline ncclResult_t emu_ncclAllReduce(const void *send, void *recv, size_t n, ncclDataType_t, ncclRedOp_t, ncclComm_t comm,
                                             cudaStream_t)
{
    return emu_mpi(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)n, MPI_FLOAT, MPI_SUM, comm->mc));
}
static inline ncclResult_t emu_ncclReduce(const void *send, void *recv, size_t n, ncclDataType_t, ncclRedOp_t, int root,
                                          ncclComm_t comm, cudaStream_t)
{
    int in_place = send == recv && comm->rank == root;
    return emu_mpi(MPI_Reduce(in_place ? MPI_IN_PLACE : send, recv, (int)n, MPI_FLOAT, MPI_SUM, root, comm->mc));
}
static inline ncclResult_t emu_ncclBroadcast(const void *, void *buf, size_t n, ncclDataType_t, int root, ncclComm_t comm,
                                             cudaStream_t)
{
    return emu_mpi(MPI_Bcast(buf, (int)n, MPI_FLOAT, root, comm->mc));
}
#else
// without MPI there is one process: the collectives leave the buffer as it is
static inline ncclResult_t emu_ncclCommSplit(ncclComm_t comm, int, int, ncclComm_t *out, ncclConfig_t *) { *out = new ncclComm(*comm); return ncclSuccess; }
static inline ncclResult_t emu_ncclSend(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) { return ncclSuccess; }
static inline ncclResult_t emu_ncclRecv(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) { return ncclSuccess; }
static inline ncclResult_t emu_ncclGroupStart(void) { return ncclSuccess; }
static inline ncclResult_t emu_ncclGroupEnd(void) { return ncclSuccess; }
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
#define ncclCommSplit emu_ncclCommSplit
#define ncclSend emu_ncclSend
#define ncclRecv emu_ncclRecv
#define ncclGetErrorString(r) "(emulated NCCL error)"

#endif
