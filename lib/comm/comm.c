/* Processes and collectives; see comm.h. MPI where the build has it
 * (SIGMA_MPI), else a single process that refuses to be launched. */
#include "comm/comm.h"
#include "base/base.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef SIGMA_MPI
#include <mpi.h>
#endif

struct Comm {
    int rank, size, local_rank;
    const char *launcher;
    int mpi;                   /* MPI_Init was called (by this Comm: the world's) */
    int split;                 /* a group of another Comm's ranks */
#ifdef SIGMA_MPI
    MPI_Comm mc;               /* its MPI communicator */
#endif
    CommBackend buffers;       /* the bound device's collectives; ops NULL until bound */
    CommStats stats;
};

/* The launcher that started this process, from the variables it sets; NULL
 * for none. Open MPI's mpirun sets OMPI_COMM_WORLD_*, srun SLURM_* (and
 * PMI_* / PMIX_* for MPI); a lone srun task (SLURM_NTASKS 1) is one process. */
static const char *launcher_of_environment(void)
{
    const char *ntasks = getenv("SLURM_NTASKS");
    if (getenv("SLURM_PROCID") && ntasks && atoi(ntasks) > 1) return "srun";
    if (getenv("OMPI_COMM_WORLD_SIZE")) return "mpirun";
    if (getenv("PMIX_RANK") || getenv("PMI_RANK")) return "launcher";
    return NULL;
}

size_t comm_shard_begin(size_t n, int rank, int size) { return n / (size_t)size * (size_t)rank + (n % (size_t)size < (size_t)rank ? n % (size_t)size : (size_t)rank); }

#ifdef SIGMA_MPI
/* Every MPI call is checked; the default handler already aborts the job
 * on an error, this names the call when one comes back anyway. */
#define MPI_CHECK(call)                                                                      \
    do {                                                                                     \
        int rc_ = (call);                                                                    \
        if (rc_ != MPI_SUCCESS) {                                                            \
            char msg_[MPI_MAX_ERROR_STRING];                                                 \
            int len_ = 0;                                                                    \
            MPI_Error_string(rc_, msg_, &len_);                                              \
            die("%s:%d: %s: %s", __FILE__, __LINE__, #call, msg_);                           \
        }                                                                                    \
    } while (0)

/* The MPI collectives over host buffers, in place. Open MPI's reductions
 * for a given size and message length follow one fixed algorithm, so they
 * repeat bit for bit. */
static void mpi_allreduce(void *impl, float *buf, size_t n)
{
    Comm *c = impl;
    for (size_t at = 0; at < n;) {   /* counts are ints */
        int k = n - at > (size_t)1 << 30 ? 1 << 30 : (int)(n - at);
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + at, k, MPI_FLOAT, MPI_SUM, c->mc));
        at += (size_t)k;
    }
}

static void shard_counts(int *counts, int *displs, size_t n, int size)
{
    for (int r = 0; r < size; r++) {
        size_t b = comm_shard_begin(n, r, size), e = comm_shard_begin(n, r + 1, size);
        if (e > INT_MAX) die("a buffer of %zu floats is too large for MPI's int counts", n);
        counts[r] = (int)(e - b);
        displs[r] = (int)b;
    }
}

static void mpi_reduce_scatter(void *impl, float *buf, size_t n)
{
    Comm *c = impl;
    int *counts = xmalloc(2 * (size_t)c->size * sizeof(int)), *displs = counts + c->size;
    shard_counts(counts, displs, n, c->size);
    float *own = buf + displs[c->rank];
    /* the whole sum lands in the own shard: MPI_Reduce_scatter cannot take MPI_IN_PLACE with a different layout */
    float *tmp = xmalloc(((size_t)counts[c->rank] + 1) * sizeof(float));
    MPI_CHECK(MPI_Reduce_scatter(buf, tmp, counts, MPI_FLOAT, MPI_SUM, c->mc));
    memcpy(own, tmp, (size_t)counts[c->rank] * sizeof(float));
    free(tmp);
    free(counts);
}

static void mpi_allgather(void *impl, float *buf, size_t n)
{
    Comm *c = impl;
    int *counts = xmalloc(2 * (size_t)c->size * sizeof(int)), *displs = counts + c->size;
    shard_counts(counts, displs, n, c->size);
    MPI_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, c->mc));
    free(counts);
}

/* MPI counts are ints: byte counts and displacements checked to fit */
static void int_counts(int *counts, int *displs, const size_t *n, int size)
{
    size_t at = 0;
    for (int r = 0; r < size; r++) {
        if (n[r] > INT_MAX || at > INT_MAX) die("an all-to-all of %zu bytes is too large for MPI's int counts", at + n[r]);
        counts[r] = (int)n[r];
        displs[r] = (int)at;
        at += n[r];
    }
}

static void mpi_alltoallv(void *impl, const void *send, const size_t *send_n, void *recv, const size_t *recv_n)
{
    Comm *c = impl;
    int *v = xmalloc(4 * (size_t)c->size * sizeof(int)), *sc = v, *sd = v + c->size, *rc = v + 2 * c->size, *rd = v + 3 * c->size;
    int_counts(sc, sd, send_n, c->size);
    int_counts(rc, rd, recv_n, c->size);
    MPI_CHECK(MPI_Alltoallv(send, sc, sd, MPI_BYTE, recv, rc, rd, MPI_BYTE, c->mc));
    free(v);
}

static const CommOps mpi_ops;
static CommBackend mpi_split(void *impl, Comm *child, int color, int key)
{
    (void)impl; (void)color; (void)key;
    return (CommBackend){&mpi_ops, child};   /* the child's own communicator */
}

static void mpi_close(void *impl) { (void)impl; }

static const CommOps mpi_ops = {"mpi", mpi_allreduce, mpi_reduce_scatter, mpi_allgather, mpi_alltoallv, mpi_split, mpi_close};
#endif

Comm *comm_open(void)
{
    Comm *c = xcalloc(1, sizeof *c);
    c->size = 1;
    c->launcher = "none";
    const char *launcher = launcher_of_environment();
    if (!launcher) return c;
#ifdef SIGMA_MPI
    int provided;
    MPI_CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
    c->mpi = 1;
    c->mc = MPI_COMM_WORLD;
    c->launcher = launcher;
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &c->size));
    MPI_Comm local;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local));
    MPI_CHECK(MPI_Comm_rank(local, &c->local_rank));
    MPI_CHECK(MPI_Comm_free(&local));
    return c;
#else
    die("started by %s as one of several processes, but this sigma was built without MPI (install libopenmpi-dev and "
        "rebuild)", launcher);
#endif
}

Comm *comm_split(Comm *c, int color, int key)
{
    Comm *s = xcalloc(1, sizeof *s);
    *s = (Comm){.size = 1, .local_rank = c->local_rank, .launcher = c->launcher, .split = 1};
    if (c->size == 1) return s;
#ifdef SIGMA_MPI
    MPI_CHECK(MPI_Comm_split(c->mc, color, key, &s->mc));
    MPI_CHECK(MPI_Comm_rank(s->mc, &s->rank));
    MPI_CHECK(MPI_Comm_size(s->mc, &s->size));
    if (c->buffers.ops) s->buffers = c->buffers.ops->split(c->buffers.impl, s, color, key);
#else
    (void)color; (void)key;
#endif
    return s;
}

void comm_close(Comm *c)
{
    if (!c) return;
    if (c->buffers.ops) c->buffers.ops->close(c->buffers.impl);
#ifdef SIGMA_MPI
    if (c->split && c->size > 1) MPI_Comm_free(&c->mc);
    if (c->mpi) MPI_Finalize();
#endif
    free(c);
}

int comm_rank(const Comm *c) { return c->rank; }
int comm_size(const Comm *c) { return c->size; }
int comm_local_rank(const Comm *c) { return c->local_rank; }
const char *comm_launcher(const Comm *c) { return c->launcher; }
const char *comm_backend(const Comm *c) { return c->size == 1 ? "none" : c->buffers.ops ? c->buffers.ops->name : "unbound"; }
CommStats comm_stats(const Comm *c) { return c->stats; }

void comm_bind_device(Comm *c, const char *device)
{
    if (c->buffers.ops) BUG("comm_bind_device twice");
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    if (!strcmp(device, "cpu")) {
        c->buffers = (CommBackend){&mpi_ops, c};
        return;
    }
#endif
#ifdef SIGMA_CUDA
    if (!strcmp(device, "cuda")) {
        c->buffers = nccl_backend_open(c);
        return;
    }
#endif
    die("no collectives for device %s in this build", device);
}

/* Runs a buffer collective and counts what it moves: the ring algorithms
 * send (size - 1) / size of the buffer per phase, twice for an all-reduce. */
static void timed(Comm *c, void (*op)(void *, float *, size_t), float *buf, size_t n, int phases)
{
    if (c->size == 1) return;
    if (!c->buffers.ops) BUG("a buffer collective before comm_bind_device");
    double t0 = now_seconds();
    op(c->buffers.impl, buf, n);
    c->stats.seconds += now_seconds() - t0;
    c->stats.bytes += (uint64_t)phases * (uint64_t)((double)n * sizeof(float) * (c->size - 1) / c->size);
    c->stats.calls++;
}

void comm_allreduce(Comm *c, float *buf, size_t n) { if (c->size > 1) timed(c, c->buffers.ops->allreduce, buf, n, 2); }
void comm_reduce_scatter(Comm *c, float *buf, size_t n) { if (c->size > 1) timed(c, c->buffers.ops->reduce_scatter, buf, n, 1); }
void comm_allgather(Comm *c, float *buf, size_t n) { if (c->size > 1) timed(c, c->buffers.ops->allgather, buf, n, 1); }

void comm_alltoallv(Comm *c, const void *send, const int *send_rows, void *recv, const int *recv_rows, size_t row_bytes)
{
    if (c->size == 1) BUG("comm_alltoallv in one process: its rows stay where they are");
    if (!c->buffers.ops) BUG("a buffer collective before comm_bind_device");
    size_t *n = xmalloc(2 * (size_t)c->size * sizeof *n), sent = 0;
    for (int r = 0; r < c->size; r++) {
        if (send_rows[r] < 0 || recv_rows[r] < 0) BUG("all-to-all of %d, %d rows", send_rows[r], recv_rows[r]);
        n[r] = (size_t)send_rows[r] * row_bytes;
        n[c->size + r] = (size_t)recv_rows[r] * row_bytes;
        sent += r == c->rank ? 0 : n[r];
    }
    double t0 = now_seconds();
    c->buffers.ops->alltoallv(c->buffers.impl, send, n, recv, n + c->size);
    double dt = now_seconds() - t0;
    c->stats.seconds += dt;
    c->stats.alltoall_seconds += dt;
    c->stats.bytes += sent;
    c->stats.alltoall_bytes += sent;
    c->stats.calls++;
    free(n);
}

void comm_sum_doubles(Comm *c, double *v, size_t n)
{
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, c->mc));
#else
    (void)v; (void)n;
#endif
}

void comm_sum_floats(Comm *c, float *v, size_t n)
{
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    mpi_allreduce(c, v, n);
#else
    (void)v; (void)n;
#endif
}

void comm_gather_shards(Comm *c, float *buf, size_t n)
{
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    int *counts = xmalloc(2 * (size_t)c->size * sizeof(int)), *displs = counts + c->size;
    shard_counts(counts, displs, n, c->size);
    if (c->rank == 0)
        MPI_CHECK(MPI_Gatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, counts, displs, MPI_FLOAT, 0, c->mc));
    else
        MPI_CHECK(MPI_Gatherv(buf + displs[c->rank], counts[c->rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, 0, c->mc));
    free(counts);
#else
    (void)buf; (void)n;
#endif
}

void comm_broadcast(Comm *c, void *buf, size_t bytes)
{
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    MPI_CHECK(MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, c->mc));
#else
    (void)buf; (void)bytes;
#endif
}

void comm_alltoall_ints(Comm *c, const int *send, int *recv, int per)
{
    if (c->size == 1) {
        memmove(recv, send, (size_t)per * sizeof(int));
        return;
    }
#ifdef SIGMA_MPI
    MPI_CHECK(MPI_Alltoall(send, per, MPI_INT, recv, per, MPI_INT, c->mc));
#endif
}

void comm_pass(Comm *c, void *buf, size_t bytes, int from, int to)
{
    if (c->size == 1 || from == to || (c->rank != from && c->rank != to)) return;
#ifdef SIGMA_MPI
    for (size_t at = 0; at < bytes;) {   /* counts are ints */
        int k = bytes - at > (size_t)1 << 30 ? 1 << 30 : (int)(bytes - at);
        if (c->rank == from) MPI_CHECK(MPI_Send((char *)buf + at, k, MPI_BYTE, to, 0, c->mc));
        else MPI_CHECK(MPI_Recv((char *)buf + at, k, MPI_BYTE, from, 0, c->mc, MPI_STATUS_IGNORE));
        at += (size_t)k;
    }
#else
    (void)buf; (void)bytes;
#endif
}

void comm_barrier(Comm *c)
{
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    MPI_CHECK(MPI_Barrier(c->mc));
#endif
}

void comm_check_same(Comm *c, uint64_t value, const char *what)
{
    if (c->size == 1) return;
#ifdef SIGMA_MPI
    uint64_t *all = xmalloc((size_t)c->size * sizeof *all);
    MPI_CHECK(MPI_Allgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, c->mc));
    char ranks[256] = "";
    size_t len = 0;
    int n_differ = 0;
    for (int r = 1; r < c->size; r++)
        if (all[r] != all[0]) {
            if (n_differ++ < 16) len += (size_t)snprintf(ranks + len, sizeof ranks - len, "%s%d", n_differ > 1 ? ", " : "", r);
        }
    free(all);
    if (n_differ)
        die("%s: not the same on rank%s %s%s as on rank 0 (every rank must be started alike; this is rank %d)", what,
            n_differ > 1 ? "s" : "", ranks, n_differ > 16 ? ", ..." : "", c->rank);
#else
    (void)value; (void)what;
#endif
}
