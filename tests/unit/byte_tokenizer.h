/* The chat tests' tokenizer: the 256 bytes, then <|endoftext|>,
 * <|im_start|> and <|im_end|> at 256, 257 and 258, so that a conversation's
 * ids are its ChatML bytes and the three specials. */
#ifndef SIGMA_TEST_BYTE_TOKENIZER_H
#define SIGMA_TEST_BYTE_TOKENIZER_H
#include "text/pretok.h"
#include "text/tokenizer.h"

static Tokenizer *byte_tokenizer(void)
{
    uint8_t bytes[256];
    uint64_t off[257];
    for (int i = 0; i < 256; i++) { bytes[i] = (uint8_t)i; off[i] = (uint64_t)i; }
    off[256] = 256;
    const char *names[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    const uint32_t ids[3] = {256, 257, 258};
    return tokenizer_build("bytes", PRETOK_GPT2, bytes, off, 256, names, ids, 3);
}

#endif
