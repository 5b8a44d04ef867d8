/* The model's gradients against central finite differences in double
 * precision: the model's sources are compiled a second time with float as
 * double (fd_double.c, plain loops instead of BLAS), so the differences are
 * taken on a double-precision forward. Every parameter tensor is checked
 * (its gradient direction and a few single elements), with each balance
 * term, the loss mask, top-1 and top-2 layers, global expert counts and
 * the routing bias. Then the fp32 model (the one every tool links) is
 * checked against the double one. Random weights, real text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/threads.h"
#include "../tap.h"
#include "base/base.h"
#include "fd_double.h"
#include "model/model.h"

/* ---- the test ------------------------------------------------------------- */

enum { B = 2, T = 8, N = B * T };
static uint32_t tokens[N + 1];

static int load_text(void)
{
    const char *env = getenv("SIGMA_DATA");
    char *p = env ? xasprintf("%s/corpora/tinyshakespeare.txt", env) : NULL;
    const char *path = p && path_exists(p) ? p : "/usr/share/common-licenses/GPL-3";
    if (!path_exists(path)) { free(p); return 0; }
    size_t len;
    char *text = read_file(path, SIZE_MAX, &len);
    for (int i = 0; i <= N; i++) tokens[i] = (uint8_t)text[1000 + i];
    free(text);
    diag("real text from %s", path);
    free(p);
    return 1;
}

/* The fp32 model against the double one: same weights, same loss and grads. */
static void check_fp32(void)
{
    double *dparams, *dgrads;
    size_t dn;
    double dl = fd_reference(&dparams, &dgrads, &dn, 2, 11, 0.3, tokens, B, T);
    Config fc;
    config_preset(&fc, "test", 300);
    fc.top_k[0] = 2;
    Model fm;
    model_init(&fm, &fc, B, T);
    ok(fm.n_params == dn, "fp32 and double models have the same layout");
    for (size_t i = 0; i < fm.n_params && i < dn; i++) fm.params[i] = (float)dparams[i];
    BalanceOptions fbo = {.kind = BALANCE_TOP1_LBL, .coef = 0.01f, .tau = 0.1f, .z_coef = 0.001f};
    model_zero_grads(&fm);
    float fl = model_forward(&fm, tokens, tokens + 1, NULL, NULL, B, T, &fbo).loss;
    model_backward(&fm, 1.0f, 1.0f);
    double gn = 0, diff = 0;
    for (size_t i = 0; i < fm.n_params && i < dn; i++) {
        gn += dgrads[i] * dgrads[i];
        diff += (fm.grads[i] - dgrads[i]) * (fm.grads[i] - dgrads[i]);
    }
    ok(fabs(fl - dl) < 1e-5 * fabs(dl), "fp32 loss %.7f matches double %.7f", fl, dl);
    ok(sqrt(diff / gn) < 1e-4, "fp32 gradients match double (relative L2 error %.2g)", sqrt(diff / gn));
    model_free(&fm);
    free(dparams);
    free(dgrads);
}

static void check_case(const FdCase *c)
{
    FdResult r = fd_check_case(c, tokens, B, T);
    ok(r.worst < 1e-4 && r.checked > 3 * r.n_tensors, "%s: %d finite differences over %d tensors, worst relative error %.2g (%s)%s",
       c->name, r.checked, r.n_tensors, r.worst, r.worst_name,
       r.flips ? " (some perturbations changed the routing and were left out)" : "");
}

int main(void)
{
    sg_init("test_model_fd");
    if (!load_text()) {
        ok(1, "# SKIP no real text (GPL-3 or tinyshakespeare) on this machine");
        return tap_done();
    }
    omp_set_num_threads(1);
    const FdCase cases[] = {
        {"top-1, standard LBL, z-loss", 1, 1, BALANCE_LBL, 0.05, 0.1, 0.01, 0, 0},
        {"top-2 then top-1, top-1 LBL, loss mask", 2, 1, BALANCE_TOP1_LBL, 0.05, 0.1, 0, 0, 1},
        {"top-2, LBL over global counts", 2, 2, BALANCE_LBL_GLOBAL, 0.05, 0.1, 0, 1, 0},
        {"top-1, no balance, routing bias", 1, 1, BALANCE_BIAS, 0, 0.1, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
    check_fp32();
    return tap_done();
}
