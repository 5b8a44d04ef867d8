/* The chat template, in one place: ChatML, as sigma-sft trains on it,
 * sigma-generate --chat prompts with it and sigma-export writes it for
 * transformers (chat_template):
 *
 *   <|im_start|>ROLE\nCONTENT<|im_end|>\n   for each message
 *   <|im_start|>assistant\n                 the generation prompt
 *
 * Encoded as transformers' apply_chat_template encodes the rendered text:
 * the special tokens by id, the text between them with the tokenizer. The
 * tokens the model learns from (the loss mask, as TRL's assistant-only
 * loss): an assistant message's content and its closing <|im_end|>; with
 * train_all, every token. */
#ifndef SIGMA_CHAT_H
#define SIGMA_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "base/json.h"
#include "text/tokenizer.h"

#define CHAT_START "<|im_start|>"
#define CHAT_END "<|im_end|>"

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, N_ROLES } ChatRole;
int chat_role_parse(const char *name, ChatRole *role);   /* 0, or -1 for another name */
const char *chat_role_name(ChatRole role);

typedef struct {
    ChatRole role;
    const char *content;       /* NUL-terminated UTF-8 */
} ChatMessage;

/* The template as Jinja, for tokenizer_config.json's chat_template. */
extern const char *const chat_template_jinja;

/* Whether tok has <|im_start|> and <|im_end|>: 1 or 0. */
int chat_tokenizer(const Tokenizer *tok);
/* Dies unless it has, saying how to get a tokenizer that does
 * (sigma-tokenize train --chat). */
void chat_check_tokenizer(const Tokenizer *tok, const char *what);

/* tok with <|im_start|> and <|im_end|> added as special tokens at the
 * first ids above its vocabulary (sigma-sft --add-chat-tokens: a base
 * model's tokenizer made without them). Dies if it has either already. */
Tokenizer *chat_add_tokens(const Tokenizer *tok, const char *what);

/* Appends messages[n] (then the generation prompt when asked) to ids, and
 * to mask (when non-NULL; one byte a token) 1 where the model learns. */
void chat_encode(const Tokenizer *tok, const ChatMessage *messages, size_t n, int add_generation_prompt, int train_all,
                 TokIds *ids, uint8_t **mask, size_t *mask_cap);

/* A JSON array of {"role", "content"} objects (a "messages" list) into
 * (*m)[n], grown as needed, the contents pointing into arr; returns n, or
 * 0 with why[why_len] saying what is wrong (naming the message). */
size_t chat_messages_from_json(const cJSON *arr, ChatMessage **m, size_t *cap, char *why, size_t why_len);

#endif
