/* Generation: requests (a prompt's token ids and how to continue it) run
 * through a device's key-value cache (model/kvcache.h), `rows` at a time.
 *
 * Each row of the cache holds one request. A step takes every row's tokens
 * not yet in the cache: a new prompt's (prefill), or the token just chosen
 * (decode); a step holds at most max_step tokens, so a long prompt is
 * prefilled over several. After a row's last token the row's logits choose
 * its next token (model/sample.h). A row finishes at one of the stop ids
 * (end-of-text, end-of-turn: not part of the output), when the caller's
 * on_token says so (a stop string), at max_tokens, or when its window is
 * full; a finished row takes the next request, so prompts of any lengths
 * share the steps and none waits for the longest.
 *
 * The window: a row holds at most `window` tokens (the model's
 * max_seq_len). A longer prompt is the caller's to refuse unless `slide`;
 * at a full window a row finishes (length), or with `slide` keeps the
 * newest half of its tokens, re-encoded from position 0, and goes on, as
 * llama.cpp's context shift does. */
#ifndef SIGMA_GENERATE_H
#define SIGMA_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "model/device.h"
#include "model/sample.h"

typedef enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH } Finish;
/* "stop" (a stop id or a stop string) or "length" (max_tokens or the window) */
const char *finish_name(Finish f);

typedef struct GenRequest {
    const uint32_t *prompt;        /* [n_prompt], not empty: the caller's, kept until on_done */
    size_t n_prompt;
    SampleOptions sample;
    uint64_t max_tokens;
    uint64_t rng;                  /* the draws' generator (splitmix64 state) */
    void *user;                    /* the caller's */
    /* results */
    uint32_t *out;                 /* [n_out] the tokens generated */
    size_t n_out, cap;
    Finish finish;
    int64_t stop_id;               /* the stop id that finished it, or -1 */
    int window_full;               /* finished (length) because the window was full */
    uint64_t slides;               /* times the window slid */
} GenRequest;

typedef struct {
    Device *dev;
    const BalanceOptions *routing; /* the model's routing: its expert bias where it was trained with one */
    int rows;                      /* requests decoded together */
    int max_step;                  /* tokens a step holds (at least rows) */
    int window;                    /* tokens a row may hold */
    int slide;
    const uint32_t *stop_ids;      /* [n_stop_ids] */
    int n_stop_ids;
    /* After each token added to r->out: non-zero finishes r (stop). */
    int (*on_token)(void *ctx, GenRequest *r, uint32_t id);
    /* When r has finished; r->out stays r's until generate_free_request. */
    void (*on_done)(void *ctx, GenRequest *r);
    void *ctx;
    /* what was done: steps holding a prompt's tokens (prefill) and steps of
     * one token a row (decode) */
    uint64_t prefill_tokens, decode_tokens, decode_steps;
    double prefill_s, decode_s;
    size_t cache_bytes;
} Generator;

/* Runs r[n]: opens a cache for the longest need (at most rows x window),
 * reporting its memory on stderr (info), and closes it after. */
void generate_run(Generator *g, GenRequest *r, size_t n);
void generate_free_request(GenRequest *r);

#endif
