/* Scoring a model, in one place for sigma-eval and the tests: the
 * log-likelihood of a continuation given a context, by
 * lm-evaluation-harness's rules, and the loss of documents over windows,
 * with the experts' load on the way. On either device, through the device
 * table (model/device.h).
 *
 * A request (context, continuation), as the harness makes it: trailing
 * spaces of the context move to the front of the continuation; whole =
 * encode(context + continuation), ctx = encode(context), and the
 * continuation's tokens are whole[len(ctx):] (an empty context is the
 * end-of-text token). The model sees (ctx + cont)[-(W + 1):][:-1], cut from
 * the left when longer than the window W; ll is the sum of the
 * continuation's log-probabilities, is_greedy whether each of its tokens is
 * the model's argmax.
 *
 * A document's loss: s = [end-of-text] + its tokens, so that every token is
 * predicted. The targets s[1 ..] are taken in consecutive chunks of
 * `stride` positions; the chunk (a, b] is predicted from the input
 * s[max(0, b - W) .. b), so each target is predicted once, with at least
 * W - stride tokens of context where the document has them (stride = W:
 * disjoint windows).
 *
 * Marked tokens (a conversation's assistant replies, chat_encode's loss
 * mask): the loss of the tokens of a sequence that learn[] marks, each
 * predicted from all the tokens before it, a sequence a row; one longer
 * than W + 1 tokens is cut to its first W + 1 (as sigma-sft cuts a long
 * conversation), so the sum is the one sigma-sft's validation takes.
 *
 * A greedy continuation: the first most likely token, appended, again,
 * until a stop token or a length; the model sees the last W tokens. */
#ifndef SIGMA_SCORE_H
#define SIGMA_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokstream.h"
#include "model/device.h"
#include "text/tokenizer.h"

typedef struct {
    Config cfg;                /* the checkpoint's model */
    char *dir;                 /* the checkpoint directory */
    const DeviceOps *ops;
    int verbose;
    Device *dev;               /* opened at the first forward, for rows of `rows` tokens */
    int rows;
    Model model;               /* the host side of the device's model */
    BalanceOptions routing;    /* no balance term; the bias kind where the run routed with its bias */
    const Tokenizer *tok;
    uint32_t eot;
    int window;                /* W */
    int batch;                 /* rows a forward holds */
    /* the experts' load over every forward of score_document */
    float *counts;             /* [L * E] */
    RouteSums *route;          /* [L] */
    /* full windows of W + 1 tokens (inputs, then the last target) waiting
     * for a forward of `batch` rows, and how many last positions of each are targets */
    uint32_t *pending;         /* [batch, W + 1] */
    int *pending_targets;      /* [batch] */
    int n_pending;
    float *scratch;            /* [V] */
} Scorer;

/* The checkpoint (a run or step directory) on `device` ("cpu", "cuda",
 * "auto"), for forwards of up to `batch` rows of `window` tokens (window <=
 * 0: the model's max_seq_len). The tokenizer must be the checkpoint's
 * (tokenizer_match). */
void scorer_open(Scorer *s, const char *ckpt, const Tokenizer *tok, const char *device, int window, int batch, int verbose);
void scorer_close(Scorer *s);
/* Opens the model for rows of up to T tokens (at most the window) before
 * the first forward, when work of several kinds follows; else the first
 * forward opens it for its own length. */
void scorer_reserve(Scorer *s, int T);

typedef struct {
    uint32_t *ids;             /* [n_ctx + n_cont] */
    size_t n_ctx, n_cont;
    double ll;                 /* results */
    int is_greedy;
    int truncated;             /* the context was cut from the left */
} Request;

/* Tokenizes one request (the strings need not be NUL-terminated). */
void request_make(Request *r, const Scorer *s, const char *context, size_t context_len, const char *continuation,
                  size_t continuation_len);
void request_free(Request *r);
/* Scores r[n], as many to a forward as fit (the longest together). */
void score_requests(Scorer *s, Request *r, size_t n);

typedef struct {
    double nll;                /* sum of -log p over the predicted tokens, nats */
    uint64_t tokens;           /* predicted */
    uint64_t bytes;            /* of the documents' text */
    uint64_t windows;          /* forwards' rows */
} LossSums;

/* Adds the loss of one document (ids[n] without an end-of-text before them;
 * text_bytes its bytes) to *sum, and its routing to s->counts and s->route. */
void score_document(Scorer *s, LossSums *sum, const uint32_t *ids, size_t n, uint64_t text_bytes, int stride);
/* Scores the windows score_document has queued; call once at the end. */
void score_flush(Scorer *s, LossSums *sum);

typedef struct {
    const uint32_t *ids;       /* [len] */
    const uint8_t *learn;      /* [len] 1 where the token is scored */
    size_t len;
    double nll;                /* results: sum of -log p over the scored tokens, nats */
    uint64_t tokens;           /* tokens scored */
    int truncated;             /* cut to W + 1 tokens */
} Marked;

/* Scores m[n], as many to a forward as fit (the longest together). */
void score_marked(Scorer *s, Marked *m, size_t n);

/* Appends to out the greedy continuation of prompt[n], at most max_new
 * tokens, ending before the first of stop[n_stop] (not appended). Returns
 * 1 when it ended there, 0 at max_new; *cut: the model saw only the last W
 * tokens at some step. */
int score_greedy(Scorer *s, const uint32_t *prompt, size_t n, const uint32_t *stop, int n_stop, int max_new, TokIds *out,
                 int *cut);

#endif
