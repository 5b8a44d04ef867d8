/* Choosing the next token from a row of logits, as transformers' generate
 * chooses it: the repetition penalty over the tokens of the row so far, then
 * greedy (the first argmax) when the temperature is 0, else temperature,
 * top-k, top-p and min-p in that order (transformers' order of its logits
 * processors) and a draw from the tokens left in proportion to their
 * softmax. Deterministic given the row's generator (splitmix64).
 *
 *   repetition penalty  a token already in the row: logit / penalty where
 *                       the logit is positive, logit * penalty where not
 *   top-k               the k largest logits (and any equal to the k-th)
 *   top-p               the most likely tokens while the probability of
 *                       those before a token is below p (the first always)
 *   min-p               the tokens whose probability is at least min-p
 *                       times the most likely one's
 *
 * And stop strings: where one appears in the text generated so far. */
#ifndef SIGMA_SAMPLE_H
#define SIGMA_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double temperature;            /* 0: greedy */
    int top_k;                     /* 0: no limit */
    double top_p;                  /* 1: no limit */
    double min_p;                  /* 0: none */
    double repetition_penalty;     /* 1: none */
} SampleOptions;

/* Greedy, nothing filtered, no penalty. */
SampleOptions sample_defaults(void);
/* The one place that knows the options' names (JSON Lines' spelling:
 * temperature, top_k, top_p, min_p, repetition_penalty) and ranges: sets
 * `name` to v and returns NULL, or returns what is wrong ("must be from 0
 * to 1, got 1.5"); -1 from *known when name is none of them. */
const char *sample_set(SampleOptions *o, const char *name, double v, int *known);
/* whether o draws at random (temperature above 0) */
static inline int sample_draws(const SampleOptions *o) { return o->temperature > 0; }

typedef struct {
    int V;
    float *x;                      /* [V] the logits being processed */
    int *idx;                      /* [V] the tokens still candidates */
    double *p;                     /* [V] their unnormalised probabilities */
    uint8_t *seen;                 /* [V] the repetition penalty's marks, all 0 between calls */
} Sampler;
void sampler_init(Sampler *s, int V);
void sampler_free(Sampler *s);
/* The next token after logits[V] (not changed) of a row whose tokens so
 * far are history[n_history] (the prompt and what was generated). */
uint32_t sample_next(Sampler *s, const float *logits, const SampleOptions *o, const uint32_t *history, size_t n_history,
                     uint64_t *rng);

/* The first place in text[len] where one of stop[n] begins, among the
 * occurrences that end after `from` (the bytes before it were searched
 * before); -1 when none. */
long stop_find(const char *text, size_t len, size_t from, char *const *stop, size_t n);

#endif
