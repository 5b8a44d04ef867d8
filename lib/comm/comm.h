/* The processes of a run and the collectives between them, in one place:
 * the trainer has one code path whatever the number of processes.
 *
 * A run started by a launcher (mpirun, or Slurm's srun) is one process per
 * rank; rank, size and local rank come from MPI (Open MPI). Without a
 * launcher it is one process, of size 1, and every collective is a no-op:
 * a build without MPI works as before and refuses only to be launched.
 *
 * Collectives over float buffers work in the memory of the device that
 * computes: the host's, over MPI, for the CPU; a GPU's, over NCCL, for CUDA
 * (one process per GPU: the local rank picks it; NCCL's unique id travels
 * over MPI). Values on the host (losses, counts, checks) always go over MPI.
 * Each call blocks until its result is in place. Sums over ranks are in a
 * fixed order for a given number of ranks, so a rerun is bit-identical. */
#ifndef SIGMA_COMM_H
#define SIGMA_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct Comm Comm;

/* The buffer collectives of one kind of memory: rank r's shard of a
 * buffer of n floats is [comm_shard_begin(n, r), comm_shard_begin(n, r + 1)). */
typedef struct {
    const char *name;          /* "mpi", "nccl" */
    void (*allreduce)(void *impl, float *buf, size_t n);         /* sum into every rank's buf */
    void (*reduce_scatter)(void *impl, float *buf, size_t n);    /* sum of the own shard into it; the rest undefined */
    void (*allgather)(void *impl, float *buf, size_t n);         /* every rank's shard into every buf */
    void (*close)(void *impl);
} CommOps;

typedef struct {
    uint64_t bytes;            /* sent by this rank in buffer collectives (ring algorithms' volume) */
    double seconds;            /* spent in them */
    uint64_t calls;
} CommStats;

/* Starts MPI when a launcher started this process; else one process. */
Comm *comm_open(void);
void comm_close(Comm *c);
int comm_rank(const Comm *c);
int comm_size(const Comm *c);
int comm_local_rank(const Comm *c);        /* among the ranks of this machine */
const char *comm_launcher(const Comm *c);  /* "mpirun", "srun", "launcher" or "none" */

/* The buffers' memory from here on: "cpu" (MPI) or "cuda" (NCCL, on the
 * device the caller selected for its local rank). Once, before any buffer
 * collective. */
void comm_bind_device(Comm *c, const char *device);
const char *comm_backend(const Comm *c);

void comm_allreduce(Comm *c, float *buf, size_t n);
void comm_reduce_scatter(Comm *c, float *buf, size_t n);
void comm_allgather(Comm *c, float *buf, size_t n);
size_t comm_shard_begin(size_t n, int rank, int size);

/* On the host, over MPI. */
void comm_gather_shards(Comm *c, float *buf, size_t n);   /* every rank's shard of buf[n] into rank 0's */
void comm_sum_doubles(Comm *c, double *v, size_t n);
void comm_sum_floats(Comm *c, float *v, size_t n);
void comm_broadcast(Comm *c, void *buf, size_t bytes);   /* from rank 0 */
void comm_barrier(Comm *c);
/* Dies on every rank, naming `what` and the ranks that differ, unless every
 * rank passes the same value. */
void comm_check_same(Comm *c, uint64_t value, const char *what);

CommStats comm_stats(const Comm *c);

/* The NCCL backend (lib/cuda/comm_nccl.cu), opened by comm_bind_device;
 * NULL in a build without CUDA. */
typedef struct {
    const CommOps *ops;
    void *impl;
} CommBackend;
CommBackend nccl_backend_open(Comm *c);

#endif
