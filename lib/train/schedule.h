/* Schedules that change with the step: the learning rate (warmup, then
 * warmup-stable-decay or cosine) and the number of experts per token in each
 * layer (progressive sparsification). */
#ifndef SIGMA_SCHEDULE_H
#define SIGMA_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LR_WSD, LR_COSINE, LR_CONSTANT } LrKind;

typedef struct {
    LrKind kind;
    double max_lr, min_lr;
    uint64_t warmup;           /* steps of linear warmup from 0 */
    uint64_t total;            /* steps of the whole run */
    double decay_fraction;     /* WSD: the last fraction of total that decays to min_lr */
} LrSchedule;

/* The learning rate of step `step` (counting from 0). */
double lr_at(const LrSchedule *s, uint64_t step);
int lr_kind_parse(const char *name, LrKind *kind);
const char *lr_kind_name(LrKind kind);

/* --topk-schedule "0:8,8,8,8,1...; 2000:1...": phases separated by ';', each
 * STEP:LIST, where LIST gives k per layer from layer 0 and a final "..."
 * repeats its last value to the last layer. The first phase starts at step
 * 0; steps increase. */
typedef struct {
    size_t n_phases;
    int n_layers;
    uint64_t *start;           /* [n_phases] first step of each phase */
    int *k;                    /* [n_phases * n_layers] */
} TopkSchedule;

/* Returns 0 and fills s, or -1 with a message in err naming what is wrong. */
int topk_parse(TopkSchedule *s, const char *spec, int n_layers, int n_experts, char *err, size_t errlen);
/* k per layer at `step`: a pointer into s, n_layers values. */
const int *topk_at(const TopkSchedule *s, uint64_t step);
/* The phase index at step (a switch happens where it changes). */
size_t topk_phase(const TopkSchedule *s, uint64_t step);
/* The canonical spec string (caller frees), for config.json and logs. */
char *topk_format(const TopkSchedule *s);
void topk_free(TopkSchedule *s);

#endif
