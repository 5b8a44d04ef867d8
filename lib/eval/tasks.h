/* Benchmarks as lm-evaluation-harness poses and scores them: each item
 * becomes one request per choice (score.h), and the results become acc,
 * acc_norm and their standard errors, or LAMBADA's accuracy and
 * perplexity. The readers take each benchmark's released file format:
 *
 *   choice      JSON Lines {"context", "choices": [..], "label"}: each choice
 *               scored as " " + choice given the context (the generic form)
 *   piqa        {"goal", "sol1", "sol2"} + a labels file (one 0/1 a line):
 *               "Question: {goal}\nAnswer:" and " " + solution
 *   lambada     {"text"}: the passage up to its last word, then " " + that
 *               word; acc = greedy on every token, perplexity = exp(-mean ll)
 *   hellaswag   {"activity_label", "ctx_a", "ctx_b", "endings", "label"},
 *               the harness's preprocessing of the text
 *   arc         AI2's {"question": {"stem", "choices": [{"text", "label"}]},
 *               "answerKey"} (and the Hugging Face form, "choices" beside
 *               "question"): "Question: {stem}\nAnswer:" and " " + text
 *   winogrande  {"sentence" with one "_", "option1", "option2", "answer"}:
 *               partial scoring, the words after the blank given each option
 *               in it
 *
 * acc = the choice of largest ll is the label; acc_norm = of largest ll
 * divided by the choice's length in characters (not winogrande's nor
 * lambada's); standard errors are those of a mean, sqrt(var / n), var with
 * n - 1. */
#ifndef SIGMA_TASKS_H
#define SIGMA_TASKS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eval/score.h"

typedef enum { TASK_CHOICE, TASK_PIQA, TASK_LAMBADA, TASK_HELLASWAG, TASK_ARC, TASK_WINOGRANDE, N_TASKS } TaskKind;
int task_parse(const char *name, TaskKind *kind);   /* 0, or -1 for an unknown name */
const char *task_name(TaskKind kind);

typedef struct {
    size_t first;              /* its requests: first .. first + n_choices - 1 */
    int n_choices;
    int label;
    size_t *chars;             /* [n_choices] the choices' lengths in characters (acc_norm) */
    uint64_t line;             /* in its file, for messages */
} Item;

typedef struct {
    TaskKind kind;
    Item *items;
    size_t n_items;
    Request *requests;
    size_t n_requests;
    uint64_t skipped;          /* bad lines skipped (--skip-bad) */
} Task;

/* Reads path (labels: PIQA's labels file, else NULL) into requests for s's
 * tokenizer. A bad line dies naming the file and line, or is skipped and
 * counted when skip_bad. limit > 0 keeps that many items: the first ones,
 * or a seeded sample when seed != 0. */
void task_read(Task *t, TaskKind kind, const char *path, const char *labels, const Scorer *s, int skip_bad, size_t limit,
               uint64_t seed);
void task_free(Task *t);

typedef struct {
    size_t n;
    double acc, acc_stderr;
    double acc_norm, acc_norm_stderr;   /* NaN where not defined */
    double perplexity;                  /* lambada; NaN elsewhere */
    size_t truncated;                   /* items whose context was cut from the left */
} TaskResult;

/* The metrics of scored requests. */
TaskResult task_result(const Task *t);
/* Item i's prediction by ll, and by ll per character (-1 where not defined). */
int item_pred(const Task *t, size_t i, int norm);
/* One JSON line per item: index, ll, is_greedy, pred, pred_norm, label, truncated. */
void task_write_examples(const Task *t, FILE *f, const char *name);

#endif
