/* How the C tests compare a result with a reference, written once: the
 * largest difference against the largest reference value (a fixture's
 * tensors), or the L2 norm of the difference against the reference's
 * (a device's logits against the CPU's). */
#ifndef SIGMA_TEST_COMPARE_H
#define SIGMA_TEST_COMPARE_H
#include <math.h>
#include <stddef.h>

/* max |a - b| / max |b| over n values */
__attribute__((unused)) static double rel_max_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

/* |a - ref| / |ref| (L2) over n values */
__attribute__((unused)) static double rel_l2_err(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
