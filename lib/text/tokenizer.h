/* A byte-level BPE tokenizer that encodes exactly as tiktoken does: the
 * text is split by a pre-tokenizer pattern (text/pretok.h), each piece is
 * a token if the vocabulary has it, else its bytes are merged pair by pair,
 * lowest rank first (leftmost on ties), until no adjacent pair is a token.
 *
 * A tokenizer is its ranks (token bytes; the rank is the id), its pattern
 * and its special tokens. It loads from a sigma tokenizer file (see
 * sigma-formats(5): '#' header lines, then tiktoken's "base64 rank" lines)
 * or from a plain tiktoken rank file plus a pattern name. Its fingerprint is
 * the XXH3-128 of its canonical file text, so it does not depend on which
 * kind of file it came from.
 *
 * A loaded tokenizer is read-only: any number of threads may encode and
 * decode with it at once. */
#ifndef SIGMA_TOKENIZER_H
#define SIGMA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokstream.h"

#define TOK_ENDOFTEXT "<|endoftext|>"
#define TOK_MAX_SPECIALS 256
#define TOK_MAX_TOKEN_BYTES 4096
#define TOK_MAX_PIECE ((size_t)1 << 20)        /* bytes of a piece merged at once (tokenizer_encode_piece) */
#define TOK_MAX_FILE_BYTES ((size_t)1 << 30)   /* a tokenizer file is read whole; o200k's is 3.6 MB */

typedef struct Tokenizer Tokenizer;

/* Growable outputs; zero-initialise, then the encode/decode calls append. */
typedef struct { uint32_t *ids; size_t len, cap; } TokIds;
typedef struct { uint8_t *bytes; size_t len, cap; } TokBytes;
void tokids_free(TokIds *v);
void tokbytes_free(TokBytes *v);

/* Loads path (a sigma tokenizer file or a plain .tiktoken file). pattern
 * may be NULL for a sigma file (its own pattern is used) but is required
 * for a plain rank file, which then gets the pattern's published special
 * tokens when it has the published number of ranks, else <|endoftext|> =
 * the number of ranks. Dies naming the file and line on any error. */
Tokenizer *tokenizer_load(const char *path, const char *pattern);

/* Builds a tokenizer from n ranks (token r = bytes[off[r] .. off[r+1])),
 * a pattern and special tokens (names[i] gets ids[i]). Copies everything.
 * Dies with a message naming `what` when the pieces are inconsistent. */
Tokenizer *tokenizer_build(const char *what, int pattern, const uint8_t *bytes, const uint64_t *off, size_t n,
                           const char *const *special_names, const uint32_t *special_ids, size_t n_specials);
void tokenizer_free(Tokenizer *t);

/* Writes the canonical sigma tokenizer file atomically. */
void tokenizer_save(const Tokenizer *t, const char *path);

/* Appends the ids of text[0..len). Special token names in the text are
 * ordinary text unless flags has TOK_ALLOW_SPECIAL. */
#define TOK_ALLOW_SPECIAL 1
void tokenizer_encode(const Tokenizer *t, TokIds *out, const uint8_t *text, size_t len, int flags);
/* Appends the bytes of ids (specials as their names); dies on an id that
 * is not in the vocabulary, naming it. */
void tokenizer_decode(const Tokenizer *t, TokBytes *out, const uint32_t *ids, size_t n);

/* A place at or after `from` where text can be cut without changing its
 * encoding: encode(s[0..p)) followed by encode(s[p..len)) equals
 * encode(s) for every pattern. It is just after a newline that follows an
 * ASCII character other than white space and precedes an ASCII letter (no
 * piece of any pattern runs across it, and no lookahead sees past it).
 * Returns len when there is none. For splitting long documents across
 * threads. */
size_t tokenizer_cut_point(const uint8_t *s, size_t len, size_t from);

/* BPE of one pre-tokenized piece (no pattern applied), for the trainer
 * and tests. */
void tokenizer_encode_piece(const Tokenizer *t, TokIds *out, const uint8_t *piece, size_t len);

/* ---- accessors ---------------------------------------------------------- */
uint32_t tokenizer_n_vocab(const Tokenizer *t);    /* max id + 1, specials included */
TokHeader tokenizer_header(const Tokenizer *t);   /* its vocabulary and fingerprint, as streams record them */
uint32_t tokenizer_n_ranks(const Tokenizer *t);    /* ordinary tokens: ids 0 .. n_ranks-1 */
int tokenizer_pattern(const Tokenizer *t);          /* PRETOK_* */
const uint8_t *tokenizer_fingerprint(const Tokenizer *t);   /* 16 bytes */
/* The bytes of an ordinary token or the name of a special; NULL if the id
 * is neither (an unused id below n_vocab). */
const uint8_t *tokenizer_token(const Tokenizer *t, uint32_t id, size_t *len);
/* The rank (= id) of a byte string, or -1. */
int64_t tokenizer_rank(const Tokenizer *t, const uint8_t *bytes, size_t len);
size_t tokenizer_n_specials(const Tokenizer *t);
const char *tokenizer_special_name(const Tokenizer *t, size_t i);
uint32_t tokenizer_special_id(const Tokenizer *t, size_t i);
/* The id of the special token `name`, or -1. */
int64_t tokenizer_special(const Tokenizer *t, const char *name);

/* base64 (RFC 4648, padded), as in tiktoken files. Returns the decoded
 * length or -1 when s is not canonical base64. out needs len*3/4 bytes. */
long base64_decode(uint8_t *out, const char *s, size_t len);
size_t base64_encode(char *out, const uint8_t *in, size_t len);   /* out: 4*ceil(len/3)+1 */

#endif
