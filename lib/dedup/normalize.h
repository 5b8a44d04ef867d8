/* Text normalization and word shingles for deduplication.
 *
 * The "datatrove" normalization is the one FineWeb's MinHash stage applies
 * before hashing (datatrove's simplify_text with its default settings), in
 * this order: lowercase; every run of decimal digits, optionally with one
 * decimal separator and more digits ("3.14", "1,000"), becomes "0"; the
 * punctuation characters of datatrove's list become spaces; white space is
 * collapsed to single spaces and trimmed; the text is decomposed (NFD) and
 * nonspacing marks (accents) are dropped. Bytes that are not valid UTF-8 are
 * kept as they are, each an opaque non-space character.
 *
 * Words are the space-separated pieces of the normalized text; a shingle is
 * n consecutive words joined by single spaces, hashed with XXH64 (seed 0) as
 * datatrove does. */
#ifndef SIGMA_DEDUP_NORMALIZE_H
#define SIGMA_DEDUP_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { DD_NORM_NONE, DD_NORM_DATATROVE } DdNorm;

/* A growable byte buffer, reused across documents by one thread. */
typedef struct {
    char *p;
    size_t len, cap;
} DdBuf;
void ddbuf_reserve(DdBuf *b, size_t cap);
void ddbuf_free(DdBuf *b);

/* datatrove's simplify_text into out (replaced); returns out->len. */
size_t dd_normalize_datatrove(DdBuf *out, const char *text, size_t len);

/* The text the words of a document are taken from, words separated by
 * exactly one space, none at either end. With DD_NORM_DATATROVE, `text` is
 * the normalized text (dd_normalize_datatrove) and the words are those of
 * datatrove's English tokenizer (spaCy) on it: the spaces, and the
 * contractions that spaCy splits ("cannot" -> "can not"). With
 * DD_NORM_NONE, `text` is raw and each run of ASCII white space is one
 * space. Returns a pointer to it (into out, or `text` itself when it is
 * already in that form) and its length in *n. */
const char *dd_word_text(DdBuf *out, size_t *n, const char *text, size_t len, DdNorm norm);

/* Hashes of the n-word shingles of word text w (as from dd_word_text) into
 * out (as uint64_t); returns how many (0 when fewer than n words). */
size_t dd_shingles(DdBuf *out, const char *w, size_t len, int n);

#endif
