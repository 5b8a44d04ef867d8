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
struct CommBackend;

/* The buffer collectives of one kind of memory: rank r's shard of a
 * buffer of n floats is [comm_shard_begin(n, r), comm_shard_begin(n, r + 1)). */
typedef struct {
    const char *name;          /* "mpi", "nccl" */
    void (*allreduce)(void *impl, float *buf, size_t n);         /* sum into every rank's buf */
    void (*reduce_scatter)(void *impl, float *buf, size_t n);    /* sum of the own shard into it; the rest undefined */
    void (*allgather)(void *impl, float *buf, size_t n);         /* every rank's shard into every buf */
    /* send_n[j] bytes to rank j, in rank order from send; recv_n[j] from rank j into recv in rank order */
    void (*alltoallv)(void *impl, const void *send, const size_t *send_n, void *recv, const size_t *recv_n);
    /* the backend of `child`, the ranks of the same color by key (collective over impl's ranks) */
    struct CommBackend (*split)(void *impl, struct Comm *child, int color, int key);
    void (*close)(void *impl);
} CommOps;

typedef struct {
    uint64_t bytes;            /* sent by this rank in buffer collectives (ring algorithms' volume) */
    double seconds;            /* spent in them */
    uint64_t calls;
    uint64_t alltoall_bytes;   /* of which in all-to-alls, to other ranks */
    double alltoall_seconds;
} CommStats;

/* Starts MPI when a launcher started this process; else one process. */
Comm *comm_open(void);
/* The ranks of c that pass the same color, ranked by key, as a Comm of
 * their own, bound to c's device when c is. Every rank of c calls it. */
Comm *comm_split(Comm *c, int color, int key);
void comm_close(Comm *c);                  /* a split's before its parent's */
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
/* Rows of row_bytes each: send_rows[j] of them to rank j, in rank order
 * from send; recv_rows[j] from rank j into recv, in rank order (the
 * receivers' counts must be what the senders send: comm_alltoall_ints). */
void comm_alltoallv(Comm *c, const void *send, const int *send_rows, void *recv, const int *recv_rows, size_t row_bytes);

/* On the host, over MPI. */
void comm_gather_shards(Comm *c, float *buf, size_t n);   /* every rank's shard of buf[n] into rank 0's */
void comm_sum_doubles(Comm *c, double *v, size_t n);
void comm_sum_floats(Comm *c, float *v, size_t n);
void comm_broadcast(Comm *c, void *buf, size_t bytes);   /* from rank 0 */
void comm_alltoall_ints(Comm *c, const int *send, int *recv, int per);   /* send[j*per ..] to rank j, recv[j*per ..] from it */
/* Point to point, on the host: rank `to` takes what rank `from` gives
 * (both call it; the others return at once). */
void comm_pass(Comm *c, void *buf, size_t bytes, int from, int to);
void comm_barrier(Comm *c);
/* Dies on every rank, naming `what` and the ranks that differ, unless every
 * rank passes the same value. */
void comm_check_same(Comm *c, uint64_t value, const char *what);

CommStats comm_stats(const Comm *c);

/* The NCCL backend (lib/cuda/comm_nccl.cu), opened by comm_bind_device;
 * NULL in a build without CUDA. */
typedef struct CommBackend {
    const CommOps *ops;
    void *impl;
} CommBackend;
CommBackend nccl_backend_open(Comm *c);

#endif
