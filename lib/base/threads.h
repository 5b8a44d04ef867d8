/* OpenMP where the compiler has it (-fopenmp), one thread where it does
 * not: the few runtime calls sigma makes, so that a build without OpenMP
 * links and runs single-threaded. */
#ifndef SIGMA_THREADS_H
#define SIGMA_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#else
static inline void omp_set_num_threads(int n) { (void)n; }
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

#endif
