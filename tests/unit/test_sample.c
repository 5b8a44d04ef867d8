/* Sampling (model/sample.h) on hand-made logits: greedy and its ties, the
 * repetition penalty, top-k with ties, top-p and min-p at transformers'
 * boundaries, temperature, the draws' frequencies, seeded determinism, the
 * options' ranges, and stop strings. */
#include "../tap.h"
#include "base/base.h"
#include "model/sample.h"

#include <math.h>
#include <string.h>

enum { DRAWS = 40000 };

/* Frequencies of the tokens of DRAWS draws into freq[V]. */
static void draw(Sampler *s, const float *logits, const SampleOptions *o, double *freq, uint64_t seed)
{
    for (int i = 0; i < s->V; i++) freq[i] = 0;
    for (int i = 0; i < DRAWS; i++) freq[sample_next(s, logits, o, NULL, 0, &seed)] += 1.0 / DRAWS;
}

/* freq[] within 0.015 of want[] */
static int near(const double *freq, const double *want, int V)
{
    for (int i = 0; i < V; i++)
        if (fabs(freq[i] - want[i]) > 0.015) {
            diag("token %d: %.4f, expected %.4f", i, freq[i], want[i]);
            return 0;
        }
    return 1;
}

int main(void)
{
    sg_init("test_sample");
    Sampler s;
    sampler_init(&s, 5);
    SampleOptions o = sample_defaults();
    uint64_t rng = 1;
    double f[5];

    /* greedy */
    float tie[5] = {1, 3, 2, 3, 0};
    ok(sample_next(&s, tie, &o, NULL, 0, &rng) == 1, "greedy takes the first of equal maxima");
    ok(rng == 1, "greedy draws nothing");

    /* the repetition penalty: each distinct token of the history once */
    float pen[5] = {2, -2, 1.5f, 0.5f, -3};
    uint32_t hist[] = {0, 1, 0, 0};
    o.repetition_penalty = 2;
    ok(sample_next(&s, pen, &o, hist, 4, &rng) == 2, "penalty 2: a repeated logit of 2 becomes 1, below 1.5");
    o.repetition_penalty = 1.2;
    ok(sample_next(&s, pen, &o, hist, 4, &rng) == 0, "penalty 1.2: 2 becomes 1.67, still the largest (once, not thrice)");
    o.repetition_penalty = 2;
    ok(sample_next(&s, pen, &o, NULL, 0, &rng) == 0, "no history, no penalty (the marks were cleared)");
    uint32_t neg[] = {4, 1};
    float negl[5] = {-1, -0.9f, -5, -5, -0.8f};
    ok(sample_next(&s, negl, &o, neg, 2, &rng) == 0, "negative logits are multiplied: -0.8 and -0.9 fall below -1");
    o.repetition_penalty = 1;

    /* temperature: softmax(logits / t) */
    float lg[5];
    double p[5] = {0.5, 0.3, 0.15, 0.05, 0}, want[5];
    for (int i = 0; i < 5; i++) lg[i] = p[i] > 0 ? logf((float)p[i]) : -INFINITY;
    o.temperature = 1;
    draw(&s, lg, &o, f, 3);
    ok(near(f, p, 5), "temperature 1 draws in proportion to softmax(logits)");
    o.temperature = 2;
    double z = 0;
    for (int i = 0; i < 4; i++) z += want[i] = sqrt(p[i]);
    for (int i = 0; i < 4; i++) want[i] /= z;
    want[4] = 0;
    draw(&s, lg, &o, f, 4);
    ok(near(f, want, 5), "temperature 2: in proportion to sqrt(p)");
    o.temperature = 1;

    /* top-k, ties at the k-th kept */
    o.top_k = 1;
    draw(&s, tie, &o, f, 5);
    ok(f[1] > 0.45 && f[3] > 0.45 && f[1] + f[3] > 0.99999, "top-k 1 keeps both tokens equal to the largest");
    o.top_k = 2;
    double w2[5] = {0.5 / 0.8, 0.3 / 0.8, 0, 0, 0};
    draw(&s, lg, &o, f, 6);
    ok(near(f, w2, 5) && f[2] == 0, "top-k 2 draws among the two largest, renormalised");
    o.top_k = 0;

    /* top-p: transformers removes a token when the probability of those
     * below it and itself is <= 1 - p */
    o.top_p = 0.75;
    draw(&s, lg, &o, f, 7);
    ok(near(f, w2, 5) && f[2] == 0, "top-p 0.75 keeps 0.5 and 0.3 (0.8 before the third is not below 0.75)");
    o.top_p = 0.85;
    double w3[5] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0, 0};
    draw(&s, lg, &o, f, 8);
    ok(near(f, w3, 5) && f[3] == 0, "top-p 0.85 keeps three");
    o.top_p = 0;
    draw(&s, lg, &o, f, 9);
    ok(f[0] > 0.99999, "top-p 0 keeps the most likely token alone");
    o.top_p = 1;

    /* min-p: at least min_p times the most likely probability */
    o.min_p = 0.25;   /* 0.125: the third passes, the fourth does not */
    draw(&s, lg, &o, f, 10);
    ok(near(f, w3, 5) && f[3] == 0, "min-p 0.25 keeps the tokens with p >= 0.125");
    o.min_p = 1;
    draw(&s, lg, &o, f, 11);
    ok(f[0] > 0.99999, "min-p 1 keeps the most likely token alone");
    o.min_p = 0;

    /* in transformers' order: top-k before top-p (top-p of the renormalised two) */
    o.top_k = 2;
    o.top_p = 0.6;   /* of 0.625 and 0.375: the first alone */
    draw(&s, lg, &o, f, 12);
    ok(f[0] > 0.99999, "top-k, then top-p over what top-k left");
    o.top_k = 0;
    o.top_p = 1;

    /* seeded */
    uint64_t a = 99, b = 99;
    int same = 1;
    for (int i = 0; i < 100; i++) same &= sample_next(&s, lg, &o, NULL, 0, &a) == sample_next(&s, lg, &o, NULL, 0, &b);
    ok(same, "the same seed draws the same tokens");
    sampler_free(&s);

    /* ranges */
    int known;
    SampleOptions r = sample_defaults();
    ok(sample_set(&r, "top_p", 0.9, &known) == NULL && known == 0 && r.top_p == 0.9, "top_p 0.9 is taken");
    const char *e = sample_set(&r, "top_p", 1.5, &known);
    ok(e && strstr(e, "from 0 to 1, got 1.5") && r.top_p == 0.9, "top_p 1.5 is refused: %s", e ? e : "");
    e = sample_set(&r, "repetition_penalty", 0, &known);
    ok(e && strstr(e, "above 0"), "repetition_penalty 0 is refused: %s", e ? e : "");
    e = sample_set(&r, "top_k", 2.5, &known);
    ok(e && strstr(e, "whole number"), "top_k 2.5 is refused: %s", e ? e : "");
    e = sample_set(&r, "temperature", -1, &known);
    ok(e != NULL, "a negative temperature is refused");
    ok(sample_set(&r, "temprature", 1, &known) == NULL && known == -1, "an unknown name is said to be one");

    /* stop strings */
    char *stops[] = {"\n\n", "END", "x"};
    const char *t = "abc ENDxyz";
    ok(stop_find(t, strlen(t), 0, stops, 3) == 4, "the first stop string found wins by position");
    ok(stop_find(t, 6, 0, stops, 3) == -1, "a stop string cut short is not found");
    ok(stop_find(t, 7, 6, stops, 2) == 4, "one that ends in the new bytes is found, beginning in the old");
    ok(stop_find(t, 10, 8, stops + 1, 1) == -1, "one that ended before `from` was found before");
    ok(stop_find("a\n\nb", 4, 2, stops, 1) == 1, "two newlines across tokens");
    return tap_done();
}
