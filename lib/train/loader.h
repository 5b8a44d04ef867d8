/* The training data loader: sequences of T+1 tokens (T inputs, each with the
 * next token as its target) cut from the shards of a split, shuffled
 * deterministically by a seed, with a position that resumes exactly.
 *
 * A shard of n tokens gives floor((n-1)/T) sequences at stride T (token
 * i*T .. i*T+T; the last token of one is the first of the next). Documents
 * stay packed as they are, each ended by its end-of-text token. The shuffle
 * has two levels so that memory stays at `group` shards: each epoch permutes
 * the shards, takes them `group` at a time, and permutes all sequences of a
 * group. A validation loader (shuffle = 0) reads sequences in order.
 *
 * Or the rows come ready-made (ChatRows: sigma-sft's conversations, packed
 * once), with each token's loss weight and position in its conversation;
 * they are one group, permuted afresh each epoch. */
#ifndef SIGMA_LOADER_H
#define SIGMA_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "data/shard.h"
#include "train/chat_data.h"

typedef struct {
    uint64_t epoch;            /* passes over the split so far */
    uint64_t group;            /* group of shards within the epoch */
    uint64_t index;            /* next sequence within the group */
} LoaderPos;

typedef struct {
    const ShardSet *set;       /* the shards of a split, or */
    int split;
    const ChatRows *rows;      /* rows made beforehand */
    uint32_t T;                /* sequence length (inputs) */
    uint64_t seed;
    int shuffle;
    size_t group_shards;       /* shards in memory at once */
    uint64_t n_sequences;      /* in the whole split */
    LoaderPos pos;
    /* the current group */
    size_t n_loaded;
    Shard *loaded;             /* [group_shards] */
    uint64_t n_group_seqs;
    uint64_t *group_seqs;      /* [n_group_seqs] (slot << 40 | sequence in shard), permuted */
    int have_group;
} Loader;

void loader_init(Loader *l, const ShardSet *set, int split, uint32_t T, uint64_t seed, int shuffle, size_t group_shards);
void loader_init_rows(Loader *l, const ChatRows *rows, uint64_t seed, int shuffle);
/* B sequences: inputs[b*T + t] and targets[b*T + t] = the token after it;
 * from rows also mask[b*T + t] (the target's loss weight) and pos[b*T + t]
 * (the token's place in its conversation), where those are non-NULL. */
void loader_next(Loader *l, uint32_t *inputs, uint32_t *targets, float *mask, int *pos, size_t B);
/* Moves to pos (as a checkpoint recorded it) after checking it against the
 * split: a group beyond the epoch's or an index beyond the group's
 * sequences dies naming `what`. */
void loader_seek(Loader *l, LoaderPos pos, const char *what);
uint64_t loader_groups(const Loader *l);   /* groups of shards per epoch */
void loader_free(Loader *l);
uint64_t shard_sequences(uint64_t n_tokens, uint32_t T);

/* Fisher-Yates shuffle of a[0..n) with a generator seeded by `seed`. */
void shuffle_u64(uint64_t *a, size_t n, uint64_t seed);

#endif
