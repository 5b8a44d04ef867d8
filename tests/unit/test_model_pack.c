/* Packing without cross-talk (model_forward's pos): documents packed into
 * rows, each token attending only to its own document and rotated by its
 * own position, give the losses and gradients of the same documents run one
 * by one, to fp32 rounding. Real text as byte tokens, random weights, top-2
 * and top-1 layers, a loss mask, the z-loss (a mean over tokens, so it
 * decomposes; the balance losses are batch statistics and do not). On both
 * attention paths the build has (BLAS or the plain loops). */
#include "../tap.h"
#include "base/base.h"
#include "base/threads.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 48, N = B * T };
/* The documents of each row: lengths that fill it exactly. */
static const int docs[B][4] = {{5, 23, 20, 0}, {48, 0, 0, 0}};

static double rel_l2(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

int main(void)
{
    sg_init("test_model_pack");
    omp_set_num_threads(1);
    const char *root = getenv("SIGMA_ROOT");
    char *path = xasprintf("%s/README.md", root ? root : ".");
    size_t len;
    char *text = read_file(path, SIZE_MAX, &len);
    if (len < (size_t)N + 1) BUG("%s is too short", path);
    Config c;
    config_preset(&c, "test", 300);
    c.top_k[0] = 2;
    uint32_t in[N], tg[N];
    float mask[N];
    int pos[N];
    for (int n = 0; n < N; n++) {
        in[n] = (unsigned char)text[n];
        tg[n] = (unsigned char)text[n + 1];
        mask[n] = text[n] != ' ';
    }
    for (int b = 0, n = 0; b < B; b++)
        for (int d = 0; docs[b][d]; d++)
            for (int p = 0; p < docs[b][d]; p++) pos[n++] = p;
    BalanceOptions bo = {.kind = BALANCE_NONE, .z_coef = 0.01f};

    Model m;
    model_init(&m, &c, B, T);
    model_init_params(&m, 5, 0.3f);
    double wsum = 0;
    for (int n = 0; n < N; n++) wsum += mask[n];

    /* packed */
    model_zero_grads(&m);
    Losses packed = model_forward(&m, in, tg, mask, pos, B, T, &bo);
    model_backward(&m, 1.0f, 1.0f);
    float *g_packed = xmalloc(m.n_params * sizeof(float));
    memcpy(g_packed, m.grads, m.n_params * sizeof(float));

    /* one by one: each document's mean losses weighted back into the packed means */
    model_zero_grads(&m);
    double ce = 0, z = 0;
    for (int b = 0, at = 0; b < B; b++)
        for (int d = 0; docs[b][d]; at += docs[b][d++]) {
            int n = docs[b][d];
            double w = 0;
            for (int i = 0; i < n; i++) w += mask[at + i];
            Losses l = model_forward(&m, in + at, tg + at, mask + at, NULL, 1, n, &bo);
            ce += l.ce * w / wsum;   /* a mean over unmasked tokens */
            z += (double)l.z * n / N;   /* a mean over all tokens */
        }
    ok(fabs(packed.ce - ce) < 1e-5 * fabs(ce), "packed cross-entropy %.7f = its documents' weighted %.7f", packed.ce, ce);
    ok(fabs(packed.z - z) < 1e-5 * fabs(z), "packed z-loss %.7g = its documents' %.7g", packed.z, z);

    /* gradients, of the cross-entropy alone: the two means weigh a document differently */
    bo.z_coef = 0;
    model_zero_grads(&m);
    model_forward(&m, in, tg, mask, pos, B, T, &bo);
    model_backward(&m, 1.0f, 1.0f);
    memcpy(g_packed, m.grads, m.n_params * sizeof(float));
    model_zero_grads(&m);
    for (int b = 0, at = 0; b < B; b++)
        for (int d = 0; docs[b][d]; at += docs[b][d++]) {
            int n = docs[b][d];
            double w = 0;
            for (int i = 0; i < n; i++) w += mask[at + i];
            model_forward(&m, in + at, tg + at, mask + at, NULL, 1, n, &bo);
            model_backward(&m, (float)(w / wsum), (float)(w / wsum));
        }
    double err = rel_l2(g_packed, m.grads, m.n_params);
    ok(err < 1e-5, "packed gradients = the sum of the documents' (relative L2 error %.2g)", err);

    /* a row that is one document: pos 0 .. T-1 is the same as none, bit for bit */
    int plain[N];
    for (int n = 0; n < N; n++) plain[n] = n % T;
    Losses a = model_forward(&m, in, tg, mask, plain, B, T, &bo);
    float *logits = xmalloc((size_t)N * c.vocab_size * sizeof(float));
    memcpy(logits, model_logits(&m), (size_t)N * c.vocab_size * sizeof(float));
    Losses b2 = model_forward(&m, in, tg, mask, NULL, B, T, &bo);
    ok(!memcmp(&a, &b2, sizeof a) && !memcmp(logits, model_logits(&m), (size_t)N * c.vocab_size * sizeof(float)),
       "positions 0 .. T-1 in every row give the bits of no positions");

    /* cross-talk would show: the second document's logits do not depend on the first's tokens */
    uint32_t in2[N];
    memcpy(in2, in, sizeof in2);
    for (int i = 0; i < 5; i++) in2[i] = (in2[i] + 7) % 256;
    model_forward(&m, in, NULL, NULL, pos, B, T, &bo);
    memcpy(logits, model_logits(&m), (size_t)N * c.vocab_size * sizeof(float));
    model_forward(&m, in2, NULL, NULL, pos, B, T, &bo);
    const size_t V = (size_t)c.vocab_size;
    ok(!memcmp(logits + 5 * V, model_logits(&m) + 5 * V, (N - 5) * V * sizeof(float)),
       "changing the first document's tokens changes no logit of the others");
    ok(memcmp(logits, model_logits(&m), 5 * V * sizeof(float)), "and does change its own");
    free(logits);
    free(g_packed);
    model_free(&m);
    free(text);
    free(path);
    return tap_done();
}
