/* The chat task: how well a model answers as an assistant, on held-out
 * conversations in sigma-sft's JSON Lines forms (train/chat_data.h reads
 * them, text/chat.h encodes them; nothing here knows the template):
 *
 *   loss   the mean cross-entropy over the tokens the chat template's mask
 *          marks (every assistant reply's content and its <|im_end|>), each
 *          predicted from the conversation before it: the number sigma-sft's
 *          validation reports for the same conversations
 *   reply  greedy, from the conversation before its last assistant message
 *          and the generation prompt, to <|im_end|> (or end-of-text, which
 *          sigma-export also names an end) or max_tokens
 *   exact  the reply equals that message's content, both trimmed of white
 *          space at either end
 *   f1     SQuAD's token F1 of the reply's words against the reference's:
 *          white-space-separated, lowercased, counted with multiplicity
 *          (1 when both have none, 0 when one has none) */
#ifndef SIGMA_CHAT_TASK_H
#define SIGMA_CHAT_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eval/score.h"
#include "train/chat_data.h"

typedef struct {
    TokIds prompt;             /* the conversation before the reply, and the generation prompt */
    char *reference;           /* the last assistant message's content, trimmed */
    char *reply;               /* the model's, trimmed */
    size_t reply_tokens;
    int ended;                 /* at an end token, not at max_tokens */
    int truncated;             /* the loss or the reply saw a conversation cut to the window */
    int exact;
    double f1;
} ChatItem;

typedef struct {
    ChatSet set;               /* the conversations, assistant tokens marked */
    Marked *marked;            /* [set.n] their loss */
    ChatItem *items;           /* [set.n] */
} ChatTask;

/* Reads path (a bad line dies naming the file and line, or is skipped and
 * counted with skip_bad); the tokenizer must have the chat tokens. The
 * work is the scorer's: score_marked over t->marked, then score_greedy
 * from each item's prompt, ending at chat_reply_ends, whose reply
 * chat_task_reply takes. */
void chat_task_read(ChatTask *t, const char *path, const Tokenizer *tok, int skip_bad);
void chat_task_free(ChatTask *t);
/* The tokens that end a reply: <|im_end|>, and end-of-text where tok has
 * it (sigma-export names both ends); returns how many. */
int chat_reply_ends(const Tokenizer *tok, uint32_t ends[2]);
/* The longest input the model will see, for scorer_reserve: a
 * conversation less its last token, or a prompt and its reply. */
int chat_task_rows(const ChatTask *t, int max_tokens);
/* Item i's greedy reply; ended: at an end token; cut: the model saw only
 * the window's last tokens. */
void chat_task_reply(ChatTask *t, size_t i, const Tokenizer *tok, const TokIds *reply, int ended, int cut);

typedef struct {
    size_t n;
    double loss;               /* nats a scored token */
    uint64_t tokens;           /* scored tokens */
    double exact, exact_stderr, f1, f1_stderr;   /* means over the items, standard errors of a mean */
    size_t ended, truncated;
} ChatResult;
ChatResult chat_task_result(const ChatTask *t);
/* One JSON line per conversation: index, loss, tokens, prompt_tokens,
 * reply, reference, reply_tokens, ended, exact, f1, truncated. */
void chat_task_write_examples(const ChatTask *t, FILE *f, const char *name);

int chat_exact(const char *reply, const char *reference);
double chat_f1(const char *reply, const char *reference);

#endif
