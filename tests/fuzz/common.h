/* What the fuzz targets share (tests/fuzz/README.md): the fuzzer's bytes
 * written to a file in a private directory, for the readers that take a
 * path, and a run of a reader in which die() -- the reader refusing bad
 * input, its job -- returns here instead of exiting. The library is built
 * with -DSIGMA_FUZZ for this (lib/base/die.c): die() longjmps to
 * sg_fuzz_die when it is set; die_at, a bug in sigma or a failed
 * allocation, aborts and is a crash. */
#ifndef SIGMA_FUZZ_COMMON_H
#define SIGMA_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* The private directory (made once, removed at exit). */
const char *fz_dir(void);
/* DIR/name holding data[0..size); returns its path (static storage per name
 * is not kept: caller frees). */
char *fz_file(const char *name, const uint8_t *data, size_t size);
/* Runs fn(arg); returns 0 when it returned, 1 when it died. */
int fz_run(void (*fn)(void *), void *arg);
/* The small model every model target reads into, made once (the seeds in
 * tests/fuzz/corpus are made with tests/fuzz/tiny.json, the same model):
 * vocabulary 257, d_model 8, 1 layer, 2 heads of 4, 1 KV head, 2 experts
 * of 4, top-1. */
Model *fz_tiny_model(void);

#endif
