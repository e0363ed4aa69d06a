/* Small-kernel aggregation (SKA) CPU kernels: forward, grad_x, grad_w.
 *
 *   out[b, c, h, w] = sum_{i,j<k} x[b, c, h+i-r, w+j-r] * wt[b, c % CW, i*k+j, h, w],  r = k / 2
 *
 * x / out / grad_out / grad_x share one layout, chosen by the caller:
 *   NCHW: contiguous (B, C, H, W)  -> *_nchw: each (b, c) plane is one flat array; a tap (di, dj) is the flat
 *         offset di*W + dj, and a per-dj column mask zeroes the positions whose column leaves the image
 *         (once the column is valid, the flat index is in range exactly when the row is), so every tap is
 *         one long vectorisable loop.
 *   NHWC: contiguous (B, H, W, C)  -> *_nhwc: per pixel, the valid taps' weights are gathered once and
 *         the channels are processed in fixed-width chunks whose accumulators stay in registers.
 * The weights wt / grad_w are a strided (B, CW, K2, H, W) view given by five element strides; the NCHW
 * kernels need stride_w == 1. Nothing k*k-times larger than x is allocated. Every kernel parallelises over
 * disjoint outputs (no atomics) with OpenMP.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VL 16 /* channel chunk of the NHWC kernels */
#define WIDX(b, j, t, h, w) ((b) * sb + (j) * sj + (t) * st + (h) * sh + (w) * sw)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define SKA_KERNELS(T, S)                                                                                   \
/* masks[(dj + r) * HW + p] = 1 if column (p % W) + dj is inside the image, else 0 */                       \
static T *column_masks_##S(int64_t H, int64_t W, int64_t k) {                                              \
    const int64_t r = k / 2, HW = H * W;                                                                    \
    T *m = (T *)malloc(sizeof(T) * k * HW);                                                                 \
    for (int64_t j = 0; j < k; ++j)                                                                         \
        for (int64_t p = 0; p < HW; ++p) {                                                                  \
            const int64_t col = p % W + j - r;                                                              \
            m[j * HW + p] = (col >= 0 && col < W) ? (T)1 : (T)0;                                            \
        }                                                                                                   \
    return m;                                                                                               \
}                                                                                                           \
                                                                                                            \
void ska_forward_nchw_##S(const T *restrict x, const T *restrict wt, T *restrict out, int64_t B, int64_t C,  \
                          int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,  \
                          int64_t sh, int64_t sw, int nthreads) {                                           \
    const int64_t r = k / 2, HW = H * W;                                                                    \
    T *masks = column_masks_##S(H, W, k);                                                                   \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                                      \
    for (int64_t bc = 0; bc < B * C; ++bc) {                                                                \
        const int64_t b = bc / C, jw = (bc % C) % CW;                                                       \
        const T *xp = x + bc * HW;                                                                          \
        T *op = out + bc * HW;                                                                              \
        memset(op, 0, sizeof(T) * HW);                                                                      \
        for (int64_t i = 0; i < k; ++i)                                                                     \
            for (int64_t j = 0; j < k; ++j) {                                                               \
                const int64_t o = (i - r) * W + (j - r), lo = MAX(0, -o), hi = MIN(HW, HW - o);            \
                const T *wp = wt + WIDX(b, jw, i * k + j, 0, 0), *m = masks + j * HW;                       \
                if (j == r)                                                                                 \
                    for (int64_t p = lo; p < hi; ++p) op[p] += xp[p + o] * wp[p];                           \
                else                                                                                        \
                    for (int64_t p = lo; p < hi; ++p) op[p] += xp[p + o] * wp[p] * m[p];                    \
            }                                                                                               \
    }                                                                                                       \
    free(masks);                                                                                            \
}                                                                                                           \
                                                                                                            \
void ska_grad_x_nchw_##S(const T *restrict gout, const T *restrict wt, T *restrict gx, int64_t B, int64_t C, \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,   \
                         int64_t sh, int64_t sw, int nthreads) {                                            \
    /* scatter: gx[p + o_t] += gout[p] * wt[t, p] * mask[p] */                                              \
    const int64_t r = k / 2, HW = H * W;                                                                    \
    T *masks = column_masks_##S(H, W, k);                                                                   \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                                      \
    for (int64_t bc = 0; bc < B * C; ++bc) {                                                                \
        const int64_t b = bc / C, jw = (bc % C) % CW;                                                       \
        const T *gp = gout + bc * HW;                                                                       \
        T *xp = gx + bc * HW;                                                                               \
        memset(xp, 0, sizeof(T) * HW);                                                                      \
        for (int64_t i = 0; i < k; ++i)                                                                     \
            for (int64_t j = 0; j < k; ++j) {                                                               \
                const int64_t o = (i - r) * W + (j - r), lo = MAX(0, -o), hi = MIN(HW, HW - o);            \
                const T *wp = wt + WIDX(b, jw, i * k + j, 0, 0), *m = masks + j * HW;                       \
                if (j == r)                                                                                 \
                    for (int64_t p = lo; p < hi; ++p) xp[p + o] += gp[p] * wp[p];                           \
                else                                                                                        \
                    for (int64_t p = lo; p < hi; ++p) xp[p + o] += gp[p] * wp[p] * m[p];                    \
            }                                                                                               \
    }                                                                                                       \
    free(masks);                                                                                            \
}                                                                                                           \
                                                                                                            \
void ska_grad_w_nchw_##S(const T *restrict gout, const T *restrict x, T *restrict gw, int64_t B, int64_t C,  \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,   \
                         int64_t sh, int64_t sw, int nthreads) {                                            \
    /* gw[j, t, p] = mask[p] * sum_g gout[g*CW + j, p] * x[g*CW + j, p + o_t] */                            \
    const int64_t r = k / 2, HW = H * W, G = C / CW;                                                        \
    T *masks = column_masks_##S(H, W, k);                                                                   \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                                      \
    for (int64_t bj = 0; bj < B * CW; ++bj) {                                                               \
        const int64_t b = bj / CW, jw = bj % CW;                                                            \
        for (int64_t i = 0; i < k; ++i)                                                                     \
            for (int64_t j = 0; j < k; ++j) {                                                               \
                const int64_t o = (i - r) * W + (j - r), lo = MAX(0, -o), hi = MIN(HW, HW - o);            \
                T *wp = gw + WIDX(b, jw, i * k + j, 0, 0);                                                  \
                const T *m = masks + j * HW;                                                                \
                memset(wp, 0, sizeof(T) * HW);                                                              \
                for (int64_t g = 0; g < G; ++g) {                                                           \
                    const int64_t off = (b * C + g * CW + jw) * HW;                                         \
                    const T *gp = gout + off, *xp = x + off;                                                \
                    for (int64_t p = lo; p < hi; ++p) wp[p] += gp[p] * xp[p + o];                           \
                }                                                                                           \
                if (j != r)                                                                                 \
                    for (int64_t p = lo; p < hi; ++p) wp[p] *= m[p];                                        \
            }                                                                                               \
    }                                                                                                       \
    free(masks);                                                                                            \
}                                                                                                           \
                                                                                                            \
/* Valid taps of pixel (h, w) looking at (h + di, w + dj) * sign: fills the flat tap ids, returns the count */ \
static inline int64_t valid_taps_##S(int64_t h, int64_t w, int64_t H, int64_t W, int64_t k, int64_t sign,   \
                                     int64_t *taps, int64_t *pix) {                                         \
    const int64_t r = k / 2;                                                                                \
    int64_t n = 0;                                                                                          \
    for (int64_t i = 0; i < k; ++i) {                                                                       \
        const int64_t hh = h + sign * (i - r);                                                              \
        if (hh < 0 || hh >= H) continue;                                                                    \
        for (int64_t j = 0; j < k; ++j) {                                                                   \
            const int64_t ww = w + sign * (j - r);                                                          \
            if (ww < 0 || ww >= W) continue;                                                                \
            taps[n] = i * k + j;                                                                            \
            pix[n++] = hh * W + ww;                                                                         \
        }                                                                                                   \
    }                                                                                                       \
    return n;                                                                                               \
}                                                                                                           \
                                                                                                            \
/* out[g*CW + c] = sum_q src[q][g*CW + c] * wl[q*CW + c] for all g, c (the NHWC inner product) */            \
static inline void aggregate_pixel_##S(T *restrict out, const T *const *src, const T *restrict wl,         \
                                       int64_t n, int64_t G, int64_t CW) {                                 \
    for (int64_t c0 = 0; c0 < CW; c0 += VL) {                                                               \
        const int64_t len = MIN(VL, CW - c0);                                                               \
        for (int64_t g = 0; g < G; ++g) {                                                                   \
            const int64_t base = g * CW + c0;                                                               \
            T acc[VL] = {0};                                                                                \
            if (len == VL) {                                                                                \
                for (int64_t q = 0; q < n; ++q) {                                                           \
                    const T *xs = src[q] + base, *ws = wl + q * CW + c0;                                    \
                    for (int v = 0; v < VL; ++v) acc[v] += xs[v] * ws[v];                                   \
                }                                                                                           \
                for (int v = 0; v < VL; ++v) out[base + v] = acc[v];                                        \
            } else {                                                                                        \
                for (int64_t q = 0; q < n; ++q) {                                                           \
                    const T *xs = src[q] + base, *ws = wl + q * CW + c0;                                    \
                    for (int64_t v = 0; v < len; ++v) acc[v] += xs[v] * ws[v];                              \
                }                                                                                           \
                for (int64_t v = 0; v < len; ++v) out[base + v] = acc[v];                                   \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
}                                                                                                           \
                                                                                                            \
void ska_forward_nhwc_##S(const T *restrict x, const T *restrict wt, T *restrict out, int64_t B, int64_t C,  \
                          int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,  \
                          int64_t sh, int64_t sw, int nthreads) {                                           \
    const int64_t G = C / CW, K2 = k * k;                                                                   \
    _Pragma("omp parallel num_threads(nthreads)")                                                           \
    {                                                                                                       \
        T *wl = (T *)malloc(sizeof(T) * K2 * CW);                                                           \
        const T **src = (const T **)malloc(sizeof(T *) * K2);                                               \
        int64_t *taps = (int64_t *)malloc(sizeof(int64_t) * K2), *pix = (int64_t *)malloc(sizeof(int64_t) * K2); \
        _Pragma("omp for schedule(static)")                                                                 \
        for (int64_t bh = 0; bh < B * H; ++bh) {                                                            \
            const int64_t b = bh / H, h = bh % H;                                                           \
            for (int64_t w = 0; w < W; ++w) {                                                               \
                const int64_t n = valid_taps_##S(h, w, H, W, k, 1, taps, pix);                              \
                for (int64_t q = 0; q < n; ++q) {                                                           \
                    src[q] = x + (b * H * W + pix[q]) * C;                                                  \
                    for (int64_t c = 0; c < CW; ++c) wl[q * CW + c] = wt[WIDX(b, c, taps[q], h, w)];        \
                }                                                                                           \
                aggregate_pixel_##S(out + (bh * W + w) * C, src, wl, n, G, CW);                             \
            }                                                                                               \
        }                                                                                                   \
        free(wl); free(src); free(taps); free(pix);                                                         \
    }                                                                                                       \
}                                                                                                           \
                                                                                                            \
void ska_grad_x_nhwc_##S(const T *restrict gout, const T *restrict wt, T *restrict gx, int64_t B, int64_t C, \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,   \
                         int64_t sh, int64_t sw, int nthreads) {                                            \
    /* gather: gx[p] = sum_t gout[q] * wt[., t, q] with q = p - d_t */                                      \
    const int64_t G = C / CW, K2 = k * k;                                                                   \
    _Pragma("omp parallel num_threads(nthreads)")                                                           \
    {                                                                                                       \
        T *wl = (T *)malloc(sizeof(T) * K2 * CW);                                                           \
        const T **src = (const T **)malloc(sizeof(T *) * K2);                                               \
        int64_t *taps = (int64_t *)malloc(sizeof(int64_t) * K2), *pix = (int64_t *)malloc(sizeof(int64_t) * K2); \
        _Pragma("omp for schedule(static)")                                                                 \
        for (int64_t bh = 0; bh < B * H; ++bh) {                                                            \
            const int64_t b = bh / H, h = bh % H;                                                           \
            for (int64_t w = 0; w < W; ++w) {                                                               \
                const int64_t n = valid_taps_##S(h, w, H, W, k, -1, taps, pix);                             \
                for (int64_t q = 0; q < n; ++q) {                                                           \
                    src[q] = gout + (b * H * W + pix[q]) * C;                                               \
                    const int64_t hq = pix[q] / W, wq = pix[q] % W;                                         \
                    for (int64_t c = 0; c < CW; ++c) wl[q * CW + c] = wt[WIDX(b, c, taps[q], hq, wq)];      \
                }                                                                                           \
                aggregate_pixel_##S(gx + (bh * W + w) * C, src, wl, n, G, CW);                              \
            }                                                                                               \
        }                                                                                                   \
        free(wl); free(src); free(taps); free(pix);                                                         \
    }                                                                                                       \
}                                                                                                           \
                                                                                                            \
void ska_grad_w_nhwc_##S(const T *restrict gout, const T *restrict x, T *restrict gw, int64_t B, int64_t C,  \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,   \
                         int64_t sh, int64_t sw, int nthreads) {                                            \
    /* gw[j, t, p] = sum_g gout[p][g*CW + j] * x[p + d_t][g*CW + j]; taps outside the image get 0 */        \
    const int64_t G = C / CW, K2 = k * k;                                                                   \
    _Pragma("omp parallel num_threads(nthreads)")                                                           \
    {                                                                                                       \
        T *acc = (T *)malloc(sizeof(T) * K2 * CW);                                                          \
        int64_t *taps = (int64_t *)malloc(sizeof(int64_t) * K2), *pix = (int64_t *)malloc(sizeof(int64_t) * K2); \
        _Pragma("omp for schedule(static)")                                                                 \
        for (int64_t bh = 0; bh < B * H; ++bh) {                                                            \
            const int64_t b = bh / H, h = bh % H;                                                           \
            for (int64_t w = 0; w < W; ++w) {                                                               \
                const T *gp = gout + (bh * W + w) * C;                                                      \
                const int64_t n = valid_taps_##S(h, w, H, W, k, 1, taps, pix);                              \
                memset(acc, 0, sizeof(T) * K2 * CW);                                                        \
                for (int64_t q = 0; q < n; ++q) {                                                           \
                    const T *xp = x + (b * H * W + pix[q]) * C;                                             \
                    T *a = acc + taps[q] * CW;                                                              \
                    for (int64_t g = 0; g < G; ++g) {                                                       \
                        const T *gs = gp + g * CW, *xs = xp + g * CW;                                       \
                        for (int64_t c = 0; c < CW; ++c) a[c] += gs[c] * xs[c];                             \
                    }                                                                                       \
                }                                                                                           \
                for (int64_t t = 0; t < K2; ++t)                                                            \
                    for (int64_t c = 0; c < CW; ++c) gw[WIDX(b, c, t, h, w)] = acc[t * CW + c];             \
            }                                                                                               \
        }                                                                                                   \
        free(acc); free(taps); free(pix);                                                                   \
    }                                                                                                       \
}

SKA_KERNELS(float, f32)
SKA_KERNELS(double, f64)
