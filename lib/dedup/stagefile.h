/* The files that sigma-dedup's stages pass to each other, specified in
 * sigma-formats(5) (DEDUP STAGE FILES): a signature file per input shard,
 * the exact duplicates of a hash partition, the candidate pairs of a band,
 * and the removal list. One container holds all four, little-endian:
 *
 *   preamble, 64 bytes: magic "SIGDEDUP", u32 version, u32 kind, u64 file
 *     size, u64 meta offset, u64 meta bytes, u64 XXH3-64 of the meta, u64
 *     zero, u64 XXH3-64 of bytes 0-55 (the file's fingerprint)
 *   sections from byte 64, back to back: arrays of fixed-size entries
 *   meta, last (written when the sections are known): the index (band or
 *     partition), the source (what the file was made from), the
 *     parameters, the shard table and the section table, each section with
 *     its XXH3-64.
 *
 * A reader checks the preamble, the size and the meta before it believes
 * any of it, and every section's checksum as it reaches the section's end;
 * a consumer checks the entries' order and ranges as it reads them. */
#ifndef SIGMA_DEDUP_STAGEFILE_H
#define SIGMA_DEDUP_STAGEFILE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "dedup/dedup.h"

#define DDF_MAGIC "SIGDEDUP"
#define DDF_VERSION 1u
#define DDF_PREAMBLE 64
#define DDF_MAX_META (256u << 20)
#define DDF_MAX_SHARDS (1u << 24)

enum { DDF_SIGNATURES = 1, DDF_EXACT = 2, DDF_PAIRS = 3, DDF_REMOVAL = 4 };

/* Section types; the entry of each (packed, little-endian):
 *   BAND   12: u64 band key, u32 document (in its shard)  sorted by key, document
 *   HASH   20: u64 high, u64 low half of the exact hash, u32 document   sorted
 *              (in the partition dd_partition gives)
 *   BAD     8: u32 document, u32 DdStatus                 by document
 *   DUPS   16: u64 document, u64 the first identical one  (global ids)
 *   PAIRS  16: u64 a, u64 b, a < b                        (global ids)
 *   REMOVE 16: u32 document, u16 DdVerdict, u16 DdStatus, u64 duplicate of (global)
 * A global id is shard << 32 | document: its order is the input order. */
enum { SEC_BAND = 1, SEC_HASH, SEC_BAD, SEC_DUPS, SEC_PAIRS, SEC_REMOVE, SEC_TYPES };
extern const uint32_t ddf_entry_size[SEC_TYPES];
/* The exact-hash partition of a document: its hash's top bits, so that
 * hashes sorted are also sorted by partition. */
static inline uint32_t dd_partition(uint64_t hi, uint32_t partitions)
{
    return (uint32_t)(((hi >> 32) * partitions) >> 32);
}
#define DD_GLOBAL(shard, doc) ((uint64_t)(shard) << 32 | (uint64_t)(doc))
#define DD_SHARD_OF(g) ((uint32_t)((g) >> 32))
#define DD_DOC_OF(g) ((uint32_t)(g))

/* What every file of one deduplication records; the stages refuse to mix
 * files made with different ones. */
typedef struct {
    uint32_t format;        /* DdFormat: jsonl, lines or nul */
    uint32_t norm;          /* DdNorm */
    uint32_t exact, near;   /* which deduplications */
    uint32_t ngram, bands, rows, seed;
    uint32_t partitions;    /* of the exact hashes */
    uint32_t skip_bad;
    char field[256];        /* JSON Lines: the text field */
} DdParams;

void dd_params_of(DdParams *p, const DdOptions *o, DdFormat format, const char *field, int partitions);
void dd_options_of(DdOptions *o, const DdParams *p);
/* 0 when equal, else writes the first difference ("--bands 20, not 14"). */
int dd_params_differ(const DdParams *a, const DdParams *b, char *why, size_t cap);

/* An input shard as the stages know it. */
typedef struct {
    char name[256];           /* its file name, without directories */
    uint64_t docs;            /* records */
    uint64_t bad;             /* records that are not documents (--skip-bad) */
    uint64_t unsigned_docs;   /* too short for a MinHash signature */
    uint64_t bytes;           /* its text (decompressed) */
    uint64_t xxh3;            /* XXH3-64 of that text */
    uint64_t sig;             /* fingerprint of its signature file (0 in that file) */
} DdShard;

typedef struct {
    uint32_t type, index;
    uint64_t count, offset, xxh3;
} DdSection;

typedef struct {
    char *path;
    int fd;
    uint32_t kind, index;
    uint64_t size, source, fingerprint;
    DdParams params;
    DdShard *shards;
    size_t n_shards;
    DdSection *sec;
    size_t n_sec;
} DdFile;

/* Opens PATH and checks it; dies naming the file and byte on anything
 * wrong, or when it is not of kind `want` (0: any). */
void ddf_open(DdFile *f, const char *path, uint32_t want);
/* The same that returns 0 and the reason instead of dying (for the check
 * whether an output is already complete). */
int ddf_try_open(DdFile *f, const char *path, char *why, size_t cap);
void ddf_close(DdFile *f);
const char *ddf_kind_name(uint32_t kind);

/* Entries of one section, read through a buffer of `bufsize` bytes. */
typedef struct {
    const DdFile *f;
    const DdSection *s;
    uint8_t *buf;
    size_t cap, pos, len;
    uint64_t next, left;      /* file offset to read next; entries not yet read */
    uint32_t esize;
    void *hash;               /* XXH3_state_t */
} DdCursor;

void ddc_open(DdCursor *c, const DdFile *f, size_t section, size_t bufsize);
/* The next entry, or NULL past the last. The section's checksum is checked
 * when its last bytes are read, before they are handed out (of a section
 * larger than the buffer, the first entries go out unchecked: a consumer
 * writes nothing final before the end). */
const uint8_t *ddc_next(DdCursor *c);
/* The file offset of the entry last handed out, for messages. */
uint64_t ddc_offset(const DdCursor *c);
void ddc_close(DdCursor *c);

/* A stage file written under a temporary name and renamed when complete. */
typedef struct {
    AtomicFile af;
    char *path;
    uint64_t off;
    DdSection *sec;
    size_t n_sec, cap_sec;
    void *hash;               /* of the open section */
    uint8_t *buf;             /* entries packed before they are written */
    size_t buf_len;
} DdWriter;

void ddw_open(DdWriter *w, const char *path);
void ddw_begin(DdWriter *w, uint32_t type, uint32_t index);
void ddw_put(DdWriter *w, const void *entry);   /* one packed entry of the open section */
void ddw_end(DdWriter *w);
void ddw_commit(DdWriter *w, uint32_t kind, uint32_t index, uint64_t source, const DdParams *p, const DdShard *shards,
                size_t n_shards);

static inline uint64_t dd_rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t dd_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t dd_rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void dd_wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void dd_wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void dd_wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

#endif
