/* The model in double precision, for test_model_fd: fd_double.c compiles
 * the model's sources a second time with float as double; the build keeps
 * only these fd_* functions global in its object (objcopy), so its copies
 * of model_forward and the rest never meet libsigma's. Plain types only
 * cross this line. */
#ifndef SIGMA_FD_DOUBLE_H
#define SIGMA_FD_DOUBLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    int k0, k1;                /* top-k of layers 0 and 1 */
    int kind;                  /* BalanceKind; BALANCE_BIAS: random routing biases */
    double coef, tau, z;
    int global, mask;
} FdCase;

typedef struct {
    double worst;              /* largest relative error of a finite difference */
    char worst_name[96];       /* in this tensor */
    int checked, flips, n_tensors;
} FdResult;

/* Every tensor of the test preset's gradients against central finite
 * differences of the double forward on tokens[B*T + 1]. */
FdResult fd_check_case(const FdCase *c, const uint32_t *tokens, int B, int T);
/* The test preset with layer 0 at top-k0: weights from seed and std, then
 * the loss and gradients of one top-1 LBL forward and backward (coef 0.01,
 * tau 0.1, z 0.001); params and grads [n] are the caller's to free. */
double fd_reference(double **params, double **grads, size_t *n, int k0, uint64_t seed, double std, const uint32_t *tokens,
                    int B, int T);

#endif
