// The grouped expert products (lib/cuda/grouped.cu) against a host
// reference in double precision on the same bf16 inputs, for groups of every
// awkward size (none, one row, a tile's worth and one either side, several
// tiles), dimensions that leave partial tiles, and the widths of the nano
// and sigma-moe-tiny experts; the device sort against route_sort, bit for
// bit. Outputs are poisoned first: rows past the groups must stay
// untouched, experts without rows must keep their gradient, and a second
// run must give the same bits. Needs a GPU; TAP on stdout.
//
// The same source built for the CPU emulation (tests/emu/cuda_emu.h) runs
// in `make test` on machines without a GPU: the kernels' index logic,
// checked there against the same reference.
#include "cuda/grouped.cuh"

extern "C" {
#include "../tap.h"
#include "model/route.h"
}
#include "bank_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 20261130;
static double uniform(void) { return (double)(splitmix64(&rng) >> 11) * 0x1.0p-53; }

template <typename T> static T *upload(const T *h, size_t n)
{
    T *d;
    CUDA_CHECK(cudaMalloc(&d, n * sizeof(T) + 16));
    CUDA_CHECK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T> static void download(T *h, const T *d, size_t n)
{
    CUDA_CHECK(cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost));
}

// n random bf16 values, and the same as doubles
static bf16 *random_bf16(double *ref, size_t n)
{
    bf16 *h = (bf16 *)xmalloc(n * sizeof(bf16));
    for (size_t i = 0; i < n; i++) {
        h[i] = __float2bfloat16((float)(uniform() * 2 - 1));
        ref[i] = __bfloat162float(h[i]);
    }
    bf16 *d = upload(h, n);
    free(h);
    return d;
}

// Whether got[i] is within tol of ref[i], relative to the size of the sum
// that made it (mag[i], the sum of |terms|): fp32 accumulation, or bf16
// rounding of the result.
static int close_all(const float *got, const double *ref, const double *mag, size_t n, double rel, double *worst)
{
    int good = 1;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]) / (mag[i] + 1e-30);
        if (!(err <= rel)) good = 0;
        if (err > *worst || err != err) *worst = err;
    }
    return good;
}

// One shape: groups of the given sizes, k inputs, n outputs per expert,
// tiles of bm rows.
static void check_products(const char *what, const int *sizes, int E, int k, int n, int bm)
{
    int A = 0;
    int *offs = (int *)xmalloc(((size_t)E + 1) * sizeof(int)), *tiles = (int *)xmalloc(((size_t)E + 1) * sizeof(int));
    offs[0] = tiles[0] = 0;
    for (int e = 0; e < E; e++) {
        offs[e + 1] = offs[e] + sizes[e];
        tiles[e + 1] = tiles[e] + (sizes[e] + bm - 1) / bm;
    }
    A = offs[E];
    const int extra = 3;   // rows past the groups: never written
    size_t nw = (size_t)E * n * k;
    double *x = (double *)xmalloc(((size_t)A + extra) * k * sizeof(double)), *w = (double *)xmalloc(nw * sizeof(double));
    double *dy = (double *)xmalloc(((size_t)A + extra) * n * sizeof(double));
    bf16 *d_x = random_bf16(x, ((size_t)A + extra) * k), *d_w = random_bf16(w, nw), *d_dy = random_bf16(dy, ((size_t)A + extra) * n);
    int *d_offs = upload(offs, (size_t)E + 1), *d_tiles = upload(tiles, (size_t)E + 1);

    // the references: y = x w_e^T, dx = dy w_e, dw_e = dy^T x (+ what was there)
    size_t ny = (size_t)A * n, nx = (size_t)A * k;
    double *y = (double *)xcalloc(ny + 1, sizeof(double)), *ym = (double *)xcalloc(ny + 1, sizeof(double));
    double *dx = (double *)xcalloc(nx + 1, sizeof(double)), *dxm = (double *)xcalloc(nx + 1, sizeof(double));
    double *dw = (double *)xcalloc(nw, sizeof(double)), *dwm = (double *)xcalloc(nw, sizeof(double));
    float *dw0 = (float *)xmalloc(nw * sizeof(float));
    for (size_t i = 0; i < nw; i++) dw0[i] = (float)(uniform() - 0.5);
    for (int e = 0; e < E; e++)
        for (int r = offs[e]; r < offs[e + 1]; r++)
            for (int j = 0; j < n; j++)
                for (int i = 0; i < k; i++) {
                    double we = w[((size_t)e * n + j) * k + i], xv = x[(size_t)r * k + i], g = dy[(size_t)r * n + j];
                    y[(size_t)r * n + j] += xv * we;
                    ym[(size_t)r * n + j] += fabs(xv * we);
                    dx[(size_t)r * k + i] += g * we;
                    dxm[(size_t)r * k + i] += fabs(g * we);
                    dw[((size_t)e * n + j) * k + i] += g * xv;
                    dwm[((size_t)e * n + j) * k + i] += fabs(g * xv);
                }
    for (size_t i = 0; i < nw; i++) {
        dw[i] += dw0[i];
        dwm[i] += fabs(dw0[i]);
    }

    // the device, outputs poisoned (NaN) but for dw's starting values
    bf16 *d_y;
    float *d_dx, *d_dw = upload(dw0, nw);
    CUDA_CHECK(cudaMalloc(&d_y, ((size_t)A + extra) * n * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&d_dx, ((size_t)A + extra) * k * sizeof(float)));
    CUDA_CHECK(cudaMemset(d_y, 0xff, ((size_t)A + extra) * n * sizeof(bf16)));
    CUDA_CHECK(cudaMemset(d_dx, 0xff, ((size_t)A + extra) * k * sizeof(float)));
    grouped_linear_forward(d_y, d_x, d_w, (long)n * k, d_offs, d_tiles, bm, A, E, k, n, 0);
    grouped_linear_backward_input(d_dx, d_dy, d_w, (long)n * k, d_offs, d_tiles, bm, A, E, k, n, 0);
    grouped_linear_backward_weight(d_dw, (long)n * k, d_dy, d_x, d_offs, E, k, n, 0);
    CUDA_CHECK(cudaDeviceSynchronize());

    size_t yall = ((size_t)A + extra) * n, xall = ((size_t)A + extra) * k;
    bf16 *hy = (bf16 *)xmalloc(yall * sizeof(bf16));
    float *fy = (float *)xmalloc(yall * sizeof(float)), *fdx = (float *)xmalloc(xall * sizeof(float));
    float *fdw = (float *)xmalloc(nw * sizeof(float));
    download(hy, d_y, yall);
    download(fdx, d_dx, xall);
    download(fdw, d_dw, nw);
    for (size_t i = 0; i < yall; i++) fy[i] = __bfloat162float(hy[i]);
    int past = 1;   // the rows after the last group: still NaN
    for (size_t i = ny; i < yall; i++) past &= isnan(fy[i]);
    for (size_t i = nx; i < xall; i++) past &= isnan(fdx[i]);
    int idle = 1;   // experts without rows: their gradient as it was, bit for bit
    for (int e = 0; e < E; e++)
        if (!sizes[e]) idle &= !memcmp(fdw + (size_t)e * n * k, dw0 + (size_t)e * n * k, (size_t)n * k * sizeof(float));
    double wy = 0, wx = 0, ww = 0;
    int gy = close_all(fy, y, ym, ny, 1.0 / 256, &wy), gx = close_all(fdx, dx, dxm, nx, 1e-5, &wx);
    int gw = close_all(fdw, dw, dwm, nw, 1e-5, &ww);
    ok(gy, "%s: forward, %d rows in %d groups, [%d] -> [%d], tiles of %d rows: within bf16 rounding (worst %.2e of the sum's size)",
       what, A, E, k, n, bm, wy);
    ok(gx, "%s: input gradient within fp32 accumulation (worst %.2e)", what, wx);
    ok(gw, "%s: weight gradient added to what was there, within fp32 accumulation (worst %.2e)", what, ww);
    ok(past && idle, "%s: rows past the groups untouched, experts without rows keep their gradient", what);

    // again: the same bits
    float *fdx2 = (float *)xmalloc(xall * sizeof(float)), *fdw2 = (float *)xmalloc(nw * sizeof(float));
    CUDA_CHECK(cudaMemcpy(d_dw, dw0, nw * sizeof(float), cudaMemcpyHostToDevice));
    grouped_linear_backward_input(d_dx, d_dy, d_w, (long)n * k, d_offs, d_tiles, bm, A, E, k, n, 0);
    grouped_linear_backward_weight(d_dw, (long)n * k, d_dy, d_x, d_offs, E, k, n, 0);
    download(fdx2, d_dx, xall);
    download(fdw2, d_dw, nw);
    ok(!memcmp(fdx, fdx2, nx * sizeof(float)) && !memcmp(fdw, fdw2, nw * sizeof(float)), "%s: deterministic", what);

    CUDA_CHECK(cudaFree(d_x));
    CUDA_CHECK(cudaFree(d_w));
    CUDA_CHECK(cudaFree(d_dy));
    CUDA_CHECK(cudaFree(d_offs));
    CUDA_CHECK(cudaFree(d_tiles));
    CUDA_CHECK(cudaFree(d_y));
    CUDA_CHECK(cudaFree(d_dx));
    CUDA_CHECK(cudaFree(d_dw));
    free(offs); free(tiles); free(x); free(w); free(dy); free(y); free(ym); free(dx); free(dxm); free(dw); free(dwm);
    free(dw0); free(hy); free(fy); free(fdx); free(fdw); free(fdx2); free(fdw2);
}

// The device sort against route_sort on random and collapsed routings.
static void check_route(int A, int E, int bm)
{
    int *sel = (int *)xmalloc(((size_t)A + 1) * sizeof(int));
    int good = 1;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < A; i++) sel[i] = pass ? (i % 3 ? 0 : E - 1) : (int)(splitmix64(&rng) % (uint64_t)E);
        int *o1 = (int *)xmalloc(((size_t)A + 1) * sizeof(int)), *r1 = (int *)xmalloc(((size_t)A + 1) * sizeof(int));
        int *f1 = (int *)xmalloc(((size_t)E + 1) * sizeof(int)), *t1 = (int *)xmalloc(((size_t)E + 1) * sizeof(int));
        float *c1 = (float *)xmalloc((size_t)E * sizeof(float));
        route_sort(o1, r1, f1, c1, sel, A, E);
        t1[0] = 0;
        for (int e = 0; e < E; e++) t1[e + 1] = t1[e] + (f1[e + 1] - f1[e] + bm - 1) / bm;
        int *d_sel = upload(sel, (size_t)A + 1), *d_order, *d_row, *d_offs, *d_tiles, *d_scratch;
        float *d_counts;
        CUDA_CHECK(cudaMalloc(&d_order, ((size_t)A + 1) * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&d_row, ((size_t)A + 1) * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&d_offs, ((size_t)E + 1) * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&d_tiles, ((size_t)E + 1) * sizeof(int)));
        CUDA_CHECK(cudaMalloc(&d_counts, (size_t)E * sizeof(float)));
        CUDA_CHECK(cudaMalloc(&d_scratch, (grouped_route_scratch(A, E) + 1) * sizeof(int)));
        grouped_route(d_order, d_row, d_offs, d_counts, d_tiles, d_scratch, d_sel, A, E, bm, 0);
        int *o2 = (int *)xmalloc(((size_t)A + 1) * sizeof(int)), *r2 = (int *)xmalloc(((size_t)A + 1) * sizeof(int));
        int *f2 = (int *)xmalloc(((size_t)E + 1) * sizeof(int)), *t2 = (int *)xmalloc(((size_t)E + 1) * sizeof(int));
        float *c2 = (float *)xmalloc((size_t)E * sizeof(float));
        download(o2, d_order, A);
        download(r2, d_row, A);
        download(f2, d_offs, (size_t)E + 1);
        download(t2, d_tiles, (size_t)E + 1);
        download(c2, d_counts, E);
        good &= !memcmp(o1, o2, (size_t)A * sizeof(int)) && !memcmp(r1, r2, (size_t)A * sizeof(int)) &&
                !memcmp(f1, f2, ((size_t)E + 1) * sizeof(int)) && !memcmp(t1, t2, ((size_t)E + 1) * sizeof(int)) &&
                !memcmp(c1, c2, (size_t)E * sizeof(float));
        CUDA_CHECK(cudaFree(d_sel)); CUDA_CHECK(cudaFree(d_order)); CUDA_CHECK(cudaFree(d_row)); CUDA_CHECK(cudaFree(d_offs));
        CUDA_CHECK(cudaFree(d_tiles)); CUDA_CHECK(cudaFree(d_counts)); CUDA_CHECK(cudaFree(d_scratch));
        free(o1); free(r1); free(f1); free(t1); free(c1); free(o2); free(r2); free(f2); free(t2); free(c2);
    }
    ok(good, "device sort of %d assignments over %d experts: route_sort's order, rows, offsets, counts and tiles of %d", A, E, bm);
    free(sel);
}

static void check_all_products(const char *how)
{
    const int awkward[] = {0, 1, 127, 128, 129, 0, 300, 5}, one[] = {517};
#ifdef SIGMA_EMU   // the real inputs' widths, fewer rows and outputs: the emulation runs a warp one lane at a time
    const int nano[] = {0, 130, 1}, tiny[] = {40, 0, 129}, nano_n = 136, tiny_n = 136;
#else
    const int nano[] = {0, 130, 260, 7, 128, 1, 200, 64}, tiny[] = {40, 0, 300, 129, 17, 90}, nano_n = 1024, tiny_n = 1536;
#endif
    char what[200];
    for (int bm = 64; bm <= 128; bm *= 2) {
        snprintf(what, sizeof what, "%sawkward groups, partial tiles", how);
        check_products(what, awkward, 8, 72, 40, bm);
        snprintf(what, sizeof what, "%sawkward groups, the test preset's experts", how);
        check_products(what, awkward, 8, 32, 32, bm);
        snprintf(what, sizeof what, "%sone group, several tiles", how);
        check_products(what, one, 1, 136, 264, bm);
    }
    snprintf(what, sizeof what, "%snano's expert width (gate|up)", how);
    check_products(what, nano, sizeof nano / sizeof *nano, 1024, nano_n, grouped_tile_rows(16384 / 32));
    snprintf(what, sizeof what, "%ssigma-moe-tiny's expert width (down)", how);
    check_products(what, tiny, sizeof tiny / sizeof *tiny, 768, tiny_n, grouped_tile_rows(8192 / 96));
}

int main(void)
{
    sg_init("grouped_check");
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || !n_dev) {
        printf("1..0 # SKIP no CUDA device\n");
        return 0;
    }
    check_route(1, 1, 128);
    check_route(1023, 8, 64);
    check_route(16384, 32, 128);
    check_route(32768, 96, 64);
    check_route(3000, 4096, 128);
    check_route(0, 4, 64);

    check_all_products("");
#ifdef SIGMA_EMU
    emu::cp_late = false;   // copies landing at once, the last warp ahead, blocks in reverse: races show
    emu::skewed = true;
    check_all_products("skewed emulation, ");
    ok_no_bank_conflicts();
#endif
    return tap_done();
}
