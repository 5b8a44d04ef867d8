/* Exact and near-duplicate detection over a corpus (docs.h).
 *
 *   1. Every document (in parallel): its text, normalized; XXH3-128 of the
 *      normalized text; the hashes of its word n-grams; a MinHash signature
 *      (minhash.h) kept only as one 64-bit key per band.
 *   2. Exact: documents sorted by hash; of equal ones the first is kept.
 *   3. Near: per band, the remaining documents sorted by key; documents with
 *      equal keys are candidate pairs (optionally kept only when the exact
 *      Jaccard similarity of their shingle sets reaches --verify); pairs are
 *      joined by union-find whose root is the lowest index, so the first
 *      document of each cluster is kept and the others point to it.
 *
 * Memory: per document its record (24 bytes), band keys (8 per band), the
 * exact hash with its index (24), the cluster link (8) and flags, about 170
 * bytes with 14 bands, plus for each band in progress (one per thread) 32
 * bytes a document to sort it and 16 per link found. The text itself is
 * mapped from the input, not held. */
#ifndef SIGMA_DEDUP_DEDUP_H
#define SIGMA_DEDUP_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "dedup/docs.h"
#include "dedup/minhash.h"
#include "dedup/normalize.h"

typedef struct {
    DdNorm norm;
    int exact, near;       /* which stages run */
    int ngram;             /* words per shingle (5) */
    int bands, rows;       /* 14 x 8 */
    uint32_t seed;         /* MinHash parameters (1, datatrove's) */
    double verify;         /* > 0: keep candidate pairs with Jaccard >= this */
    int skip_bad;          /* bad records: skip (else the caller dies) */
    int threads;           /* 0: all cores */
} DdOptions;

void dd_options_default(DdOptions *o);

typedef enum { DD_KEEP = 0, DD_EXACT, DD_NEAR, DD_SKIPPED } DdVerdict;

typedef struct {
    size_t n;
    uint8_t *verdict;      /* [n] DdVerdict */
    uint8_t *status;       /* [n] DdStatus of the record */
    uint64_t *dup_of;      /* [n] for a removed document, the one it duplicates */
    uint64_t kept, exact_removed, near_removed, bad, unsigned_docs;
    uint64_t candidate_pairs, verified_pairs;
    uint64_t bytes_in, bytes_out;
    size_t first_bad;      /* index of the first bad record (when bad > 0) */
} DdResult;

/* One thread's working memory for dd_sign, with the band keys of the last
 * texts it signed, found by their hash (DD_SIGN_CACHE of them). */
#ifndef DD_SIGN_CACHE
#define DD_SIGN_CACHE 4096
#endif
typedef struct {
    DdBuf json, norm, words, shingles;
    uint64_t *sig;     /* [bands * rows] */
    uint64_t *cache;   /* [DD_SIGN_CACHE][3 + bands]: hash, 0 empty, 1 too short, 2 keys; the keys */
    uint64_t hits;
} DdSigner;
void dd_signer_init(DdSigner *s, const DdOptions *o);
void dd_signer_free(DdSigner *s);

/* What one document contributes, the same in one process and in stages:
 * with o->exact the XXH3-128 of its normalized text (exact[0] the low
 * half), with o->near its band keys (keys[bands]). Returns 1 when it has a
 * MinHash signature, 0 when it has fewer words than a shingle (or near is
 * off). s->json is free for the caller's JSON text. */
int dd_sign(DdSigner *s, const MinHashParams *mp, const DdOptions *o, const char *text, size_t len, uint64_t exact[2],
            uint64_t *keys);

/* A document's key in one band. */
typedef struct {
    uint64_t key;
    uint64_t idx;
} BandKey;
/* Stable sort by key (equal keys keep their order: entries that arrive in
 * index order stay so), for keys that are hashes. tmp[n]. */
void dd_sort_band(BandKey *a, BandKey *tmp, size_t n);

/* Runs the stages. Bad records are marked and counted; the caller decides
 * whether they are fatal (see first_bad) before writing anything. */
void dd_run(DdResult *r, const DdCorpus *c, const DdOptions *o);
void dd_result_free(DdResult *r);

/* Jaccard similarity of the n-gram shingle sets of two texts. */
double dd_jaccard(const char *a, size_t na, const char *b, size_t nb, DdNorm norm, int ngram);

#endif
