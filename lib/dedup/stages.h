/* sigma-dedup's stages: the one-process deduplication (dedup.h) cut into
 * steps that are each a pure function of files, so that make, a Slurm
 * array or GNU parallel can run them over many input shards, on many
 * machines, and rerun only a failed one:
 *
 *   signatures  one input shard -> its exact hashes, partitioned, and band
 *               keys, each sorted and written in runs of bounded memory
 *   exact       one hash partition over every shard -> exact duplicates
 *   buckets     one band over every shard -> candidate pairs
 *   clusters    all of them -> the removal list (union-find)
 *   filter      one input shard + the removal list -> its kept documents
 *
 * The result is exactly the one-process mode's over the shards in order
 * (shard i's documents numbered after those of shards 0..i-1): the same
 * exact hashes and band keys (dd_sign), the same first-of-group rule for
 * exact copies, the same clusters rooted at their lowest document. The
 * near stage sees the exact copies too, which changes no cluster of the
 * others: a copy shares every band key with the first of its group.
 *
 * Each output is written under a temporary name and renamed when complete;
 * a stage whose output is already complete and made from the same inputs
 * and parameters does nothing (filter: whose output is newer than both
 * its inputs, as make decides), so a rerun after a crash does only what is
 * missing. */
#ifndef SIGMA_DEDUP_STAGES_H
#define SIGMA_DEDUP_STAGES_H

#include <stddef.h>
#include <stdint.h>

#include "dedup/stagefile.h"

typedef struct {
    int force;             /* redo even when the output is complete */
    int threads;           /* signatures: 0 = every core */
    uint64_t memory;       /* signatures: the run being filled; exact, buckets: the read buffers */
    const char *stats;     /* clusters: the JSON summary */
    const char *removed;   /* filter: the dropped documents, as sigma-dedup --removed */
} DdStageOptions;

#define DD_STAGE_MEMORY 64000000u   /* --memory's default, 64M */

void dd_stage_signatures(const char *out, const char *input, const DdParams *p, const DdStageOptions *so);
void dd_stage_exact(const char *out, uint32_t partition, char **sigs, size_t n, const DdStageOptions *so);
void dd_stage_buckets(const char *out, uint32_t band, char **sigs, size_t n, const DdStageOptions *so);
void dd_stage_clusters(const char *out, char **files, size_t n, const DdStageOptions *so);
void dd_stage_filter(const char *out, const char *removal, const char *input, const DdStageOptions *so);

#endif
