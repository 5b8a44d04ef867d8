/* Load balancing, in one place for both devices: the kinds, the loss values
 * and gradient coefficients computed from a layer's router statistics
 * (each device gathers those its own way: model.c on the host, the CUDA
 * core in kernels), the aux-loss-free bias step, and the load statistics
 * that training metrics and evaluation report.
 *
 * With N tokens, k experts each, E experts, p the router's full softmax:
 *   lbl       a E sum_e f_e P_e, f_e the fraction of the N k assignments
 *             routed to e (over the micro-batch, or the step's global
 *             counts for lbl-global), P_e the mean of p_e over tokens
 *   top1-lbl  a E sum_e fhat_e^2 / pbar, fhat = mean of softmax(z / tau),
 *             pbar = mean probability of each token's first choice (the
 *             report's top-1 LBL)
 *   bias      no loss: top-k by p + bias (DeepSeek-V3's aux-loss-free
 *             balancing); the bias moves toward balance after each step
 *   z-loss    z_coef mean over tokens of logsumexp(z)^2, beside any kind */
#ifndef SIGMA_BALANCE_H
#define SIGMA_BALANCE_H

typedef enum { BALANCE_NONE, BALANCE_LBL, BALANCE_LBL_GLOBAL, BALANCE_TOP1_LBL, BALANCE_BIAS } BalanceKind;
int balance_kind_parse(const char *name, BalanceKind *kind);   /* 0, or -1 for an unknown name */
const char *balance_kind_name(BalanceKind kind);               /* "none", "lbl", "lbl-global", "top1-lbl", "bias" */
static inline int balance_is_lbl(BalanceKind k) { return k == BALANCE_LBL || k == BALANCE_LBL_GLOBAL; }

typedef struct {
    BalanceKind kind;
    float coef;                    /* a */
    float tau;                     /* top-1 LBL temperature */
    float z_coef;                  /* router z-loss coefficient; 0 off */
    /* Standard LBL over a global batch: expert counts [n_layers * n_experts]
     * summed over every micro-batch (and rank) of the step, and their total
     * token count per layer [n_layers]; NULL = this micro-batch's own. */
    const float *global_counts;
    const float *global_tokens;
} BalanceOptions;

/* Whether routing adds the expert bias to p before taking the top k. */
static inline int balance_uses_bias(const BalanceOptions *bo) { return bo->kind == BALANCE_BIAS; }

/* f_e of layer l: counts[E] are this micro-batch's (N tokens, k each). */
double lbl_fraction(const BalanceOptions *bo, const float *counts, int l, int e, int N, int k, int E);
/* The standard LBL's value; sum_p[E] = p_e summed over the N tokens. */
double lbl_loss(const BalanceOptions *bo, const float *counts, const double *sum_p, int l, int N, int k, int E);
/* Its gradient with respect to each token's p_e (the same for every token), times scale. */
double lbl_grad(const BalanceOptions *bo, const float *counts, int l, int e, int N, int k, int E, float scale);
/* The top-1 LBL's value from fhat[E] and pbar. */
double top1_lbl_loss(const BalanceOptions *bo, const double *fhat, double pbar, int E);
/* Its gradients, times scale: dL/dfhat_e into gf[E]; returns dL/dpbar. */
double top1_lbl_grads(double *gf, const BalanceOptions *bo, const double *fhat, double pbar, int E, float scale);
/* The z-loss's value; sum_lse2 = logsumexp(z)^2 summed over the N tokens. */
double z_loss(const BalanceOptions *bo, double sum_lse2, int N);

/* A layer's routing summed over tokens, forward after forward (eval). */
typedef struct {
    double tokens;
    double top1_p;             /* the probability of each token's first choice */
    double entropy;            /* -sum p log p of each token's routing distribution */
} RouteSums;

/* The entropy of a layer's load (counts as a distribution over experts),
 * in nats: log E when even, 0 when one expert takes all. */
double load_entropy(const float *counts, int E);
/* Experts that got no token. */
int idle_experts(const float *counts, int E);

/* The aux-loss-free step of one layer: bias_e += rate * sign(mean count - count_e). */
void bias_update(float *bias, const float *counts, int E, float rate);
/* The report's balance metric of one layer: the relative deviation from the
 * mean count, (count - mean) / mean, of the busiest and idlest expert. */
void load_deviation(const float *counts, int E, double *max_dev, double *min_dev);

#endif
