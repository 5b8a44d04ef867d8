/* Pre-tokenizers: hand-written equivalents of tiktoken's regular expressions
 * (gpt2 = r50k, cl100k, o200k), which split text into the pieces that BPE
 * encodes one by one. Each matcher returns the end of the piece that starts
 * at `pos`, exactly where tiktoken's regex (fancy-regex, leftmost-first,
 * backtracking) would end it. Unicode classes come from utf8proc (Unicode
 * 15 in Debian's 2.8); \s is the White_Space property. Bytes that are not
 * valid UTF-8 are one "character" each, of no class (like a lone surrogate
 * in Python's regex module), so any byte string has a well-defined split. */
#ifndef SIGMA_PRETOK_H
#define SIGMA_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PRETOK_GPT2 = 0, PRETOK_CL100K, PRETOK_O200K, PRETOK_COUNT } PretokPattern;

/* "gpt2" (alias "r50k"), "cl100k", "o200k"; -1 when unknown. */
int pretok_by_name(const char *name);
const char *pretok_name(int pattern);
/* tiktoken's published regular expression for the pattern, for export. */
const char *pretok_regex(int pattern);

/* End of the piece starting at pos (pos < len); always > pos. */
size_t pretok_next(int pattern, const uint8_t *s, size_t len, size_t pos);

/* Character classes, exposed for tests. */
enum { CC_L = 1, CC_N = 2, CC_S = 4, CC_U = 8, CC_W = 16, CC_NL = 32, CC_LU = 64, CC_LL = 128 };
/* Decodes one character at s[pos]: returns its byte length and sets *cls. */
int pretok_char(const uint8_t *s, size_t len, size_t pos, unsigned *cls);

#endif
