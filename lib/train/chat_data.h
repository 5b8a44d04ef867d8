/* Chat data for supervised fine-tuning: conversations read from JSON Lines
 * (the form TRL and OpenAI use), encoded with the chat template
 * (text/chat.h) and its loss mask, and laid into rows of the sequence
 * length, packed without cross-talk (positions restarting at each
 * conversation, which model_forward's pos turns into block-diagonal
 * attention) or one conversation a row.
 *
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
 *   {"prompt": "...", "completion": "..."}   a user turn and the assistant's reply
 *
 * A conversation without an assistant turn teaches nothing: it is skipped
 * and counted. An unknown role, a content that is not a string or a line
 * that is neither form is an error naming the file and line, or skipped and
 * counted with skip_bad. */
#ifndef SIGMA_CHAT_DATA_H
#define SIGMA_CHAT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

typedef struct {
    uint32_t *ids;             /* [len] */
    uint8_t *learn;            /* [len] 1 where the model learns the token */
    size_t len;
} Conversation;

typedef struct {
    Conversation *conv;
    size_t n;
    uint64_t no_assistant;     /* skipped: nothing to learn */
    uint64_t bad;              /* skipped bad lines (skip_bad) */
    uint64_t cut;              /* longer than max_len: cut to it */
    uint64_t dropped;          /* longer than max_len: left out */
} ChatSet;

/* Reads path. A conversation longer than max_len tokens (the rows' length
 * plus one: a row predicts its tokens' successors) is cut to it when
 * cut_long, else dropped; both counted. */
void chatset_read(ChatSet *s, const char *path, const Tokenizer *tok, int train_all, int skip_bad, size_t max_len, int cut_long);
void chatset_free(ChatSet *s);

/* Rows of T tokens: inputs, targets (each token's successor in its
 * conversation), mask (1 where the target is a token the model learns, 0
 * for the last token of a conversation and for padding), and pos (each
 * token's place in its conversation; padding is a document of its own).
 * The conversations are taken in `order` (n of them): packed by best-fit
 * decreasing (the longest first, each into the row it fills most tightly;
 * equal lengths in that order), or one a row in that order. */
typedef struct {
    uint32_t *inputs, *targets;   /* [n_rows * T] */
    float *mask;                  /* [n_rows * T] */
    int *pos;                     /* [n_rows * T] */
    size_t n_rows;
    int T;
    uint64_t tokens, learned;     /* conversation tokens laid out, and targets with loss */
} ChatRows;
void chat_rows(ChatRows *r, const ChatSet *s, const size_t *order, size_t n, int T, int pack, uint32_t pad);
void chat_rows_free(ChatRows *r);

/* sigma-sft's data: the conversations of path, a validation share held out
 * (the conversations of val_path, or a seeded val_fraction of path's), and
 * both laid into rows of T. The training rows are packed once, equal
 * lengths in an order drawn from seed (so that neighbours in a row are
 * unrelated); the loader permutes the rows each epoch. Dies, naming
 * the file, when nothing is left to learn from. */
typedef struct {
    ChatSet train, val;
    ChatRows train_rows, val_rows;    /* val_rows.n_rows == 0: no validation */
} ChatData;
typedef struct {
    int T;
    int train_all, pack, cut_long, skip_bad;
    uint64_t seed;
} ChatLayout;
void chat_data_open(ChatData *d, const char *path, const char *val_path, double val_fraction, const Tokenizer *tok,
                    const ChatLayout *lay);
void chat_data_free(ChatData *d);

#endif
