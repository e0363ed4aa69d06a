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

#define MAX_TAPS 49 /* k <= 7 */
/* one 64-byte SIMD register (and half of one) per type, via GCC/Clang vector extensions; unaligned access */
typedef float V_f32 __attribute__((vector_size(64), aligned(4)));
typedef float H_f32 __attribute__((vector_size(32), aligned(4)));
typedef double V_f64 __attribute__((vector_size(64), aligned(8)));
typedef double H_f64 __attribute__((vector_size(32), aligned(8)));
#define LANES_f32 16
#define LANES_f64 8
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
/* Valid taps of pixel (h, w) looking at (h, w) + sign * d_t: fills the tap ids and flat pixels, returns the count */ \
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
/* out[g*CW + c] = sum_q src[q][g*CW + c] * wrow[q][c] for all g, c: the NHWC inner product of one pixel.     \
 * Channel chunks of one and half a SIMD register keep the n weight vectors in registers across the G groups; \
 * the 9-tap case is unrolled at compile time. */                                                           \
static inline void aggregate_pixel_##S(T *restrict out, const T *const *src, const T *const *wrow,         \
                                       int64_t n, int64_t G, int64_t CW) {                                 \
    int64_t c0 = 0;                                                                                         \
    for (; c0 + LANES_##S <= CW; c0 += LANES_##S) {                                                         \
        V_##S wv[MAX_TAPS];                                                                                 \
        if (n == 9) {                                                                                       \
            for (int q = 0; q < 9; ++q) wv[q] = *(const V_##S *)(wrow[q] + c0);                             \
            for (int64_t g = 0; g < G; ++g) {                                                               \
                const int64_t o = g * CW + c0;                                                              \
                V_##S acc = *(const V_##S *)(src[0] + o) * wv[0];                                           \
                for (int q = 1; q < 9; ++q) acc += *(const V_##S *)(src[q] + o) * wv[q];                    \
                *(V_##S *)(out + o) = acc;                                                                  \
            }                                                                                               \
        } else {                                                                                            \
            for (int64_t q = 0; q < n; ++q) wv[q] = *(const V_##S *)(wrow[q] + c0);                         \
            for (int64_t g = 0; g < G; ++g) {                                                               \
                const int64_t o = g * CW + c0;                                                              \
                V_##S acc = {0};                                                                            \
                for (int64_t q = 0; q < n; ++q) acc += *(const V_##S *)(src[q] + o) * wv[q];                \
                *(V_##S *)(out + o) = acc;                                                                  \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
    for (; c0 + LANES_##S / 2 <= CW; c0 += LANES_##S / 2) {                                                 \
        H_##S wv[MAX_TAPS];                                                                                 \
        for (int64_t q = 0; q < n; ++q) wv[q] = *(const H_##S *)(wrow[q] + c0);                             \
        for (int64_t g = 0; g < G; ++g) {                                                                   \
            const int64_t o = g * CW + c0;                                                                  \
            H_##S acc = {0};                                                                                \
            for (int64_t q = 0; q < n; ++q) acc += *(const H_##S *)(src[q] + o) * wv[q];                    \
            *(H_##S *)(out + o) = acc;                                                                      \
        }                                                                                                   \
    }                                                                                                       \
    for (; c0 < CW; ++c0)                                                                                   \
        for (int64_t g = 0; g < G; ++g) {                                                                   \
            T acc = 0;                                                                                      \
            for (int64_t q = 0; q < n; ++q) acc += src[q][g * CW + c0] * wrow[q][c0];                       \
            out[g * CW + c0] = acc;                                                                         \
        }                                                                                                   \
}                                                                                                           \
                                                                                                            \
/* Weight rows (CW values) of the taps of pixel `p`: pointers into wt when channels are unit-stride, else a    \
 * gathered copy in `buffer`. */                                                                            \
static inline void weight_rows_##S(const T *wt, int64_t b, int64_t p, int64_t W, const int64_t *taps, int64_t n, \
                                   int64_t CW, int64_t sb, int64_t sj, int64_t st, int64_t sh, int64_t sw,  \
                                   T *buffer, const T **rows, int64_t q0) {                                 \
    const int64_t h = p / W, w = p % W;                                                                     \
    for (int64_t q = q0; q < q0 + n; ++q) {                                                                 \
        const T *row = wt + WIDX(b, 0, taps[q], h, w);                                                      \
        if (sj == 1) {                                                                                      \
            rows[q] = row;                                                                                  \
        } else {                                                                                            \
            for (int64_t c = 0; c < CW; ++c) buffer[q * CW + c] = row[c * sj];                              \
            rows[q] = buffer + q * CW;                                                                      \
        }                                                                                                   \
    }                                                                                                       \
}                                                                                                           \
                                                                                                            \
void ska_forward_nhwc_##S(const T *restrict x, const T *restrict wt, T *restrict out, int64_t B, int64_t C,  \
                          int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,  \
                          int64_t sh, int64_t sw, int nthreads) {                                           \
    const int64_t G = C / CW, K2 = k * k, r = k / 2;                                                        \
    int64_t offsets[MAX_TAPS];                                                                              \
    for (int64_t q = 0; q < K2; ++q) offsets[q] = ((q / k - r) * W + (q % k - r)) * C;                      \
    _Pragma("omp parallel num_threads(nthreads)")                                                           \
    {                                                                                                       \
        T *buffer = (T *)malloc(sizeof(T) * K2 * CW);                                                       \
        const T **src = (const T **)malloc(sizeof(T *) * K2), **rows = (const T **)malloc(sizeof(T *) * K2); \
        int64_t *taps = (int64_t *)malloc(sizeof(int64_t) * K2), *pix = (int64_t *)malloc(sizeof(int64_t) * K2); \
        _Pragma("omp for schedule(static)")                                                                 \
        for (int64_t bh = 0; bh < B * H; ++bh) {                                                            \
            const int64_t b = bh / H, h = bh % H;                                                           \
            const int interior_row = h >= r && h + r < H;                                                   \
            for (int64_t w = 0; w < W; ++w) {                                                               \
                const T *center = x + (bh * W + w) * C;                                                     \
                int64_t n;                                                                                  \
                if (interior_row && w >= r && w + r < W) { /* all taps inside: fixed offsets */             \
                    n = K2;                                                                                 \
                    for (int64_t q = 0; q < K2; ++q) {                                                      \
                        taps[q] = q;                                                                        \
                        src[q] = center + offsets[q];                                                       \
                    }                                                                                       \
                } else {                                                                                    \
                    n = valid_taps_##S(h, w, H, W, k, 1, taps, pix);                                        \
                    for (int64_t q = 0; q < n; ++q) src[q] = x + (b * H * W + pix[q]) * C;                  \
                }                                                                                           \
                weight_rows_##S(wt, b, h * W + w, W, taps, n, CW, sb, sj, st, sh, sw, buffer, rows, 0);     \
                aggregate_pixel_##S(out + (bh * W + w) * C, src, rows, n, G, CW);                           \
            }                                                                                               \
        }                                                                                                   \
        free(buffer); free(src); free(rows); free(taps); free(pix);                                         \
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
        T *buffer = (T *)malloc(sizeof(T) * K2 * CW);                                                       \
        const T **src = (const T **)malloc(sizeof(T *) * K2), **rows = (const T **)malloc(sizeof(T *) * K2); \
        int64_t *taps = (int64_t *)malloc(sizeof(int64_t) * K2), *pix = (int64_t *)malloc(sizeof(int64_t) * K2); \
        _Pragma("omp for schedule(static)")                                                                 \
        for (int64_t bh = 0; bh < B * H; ++bh) {                                                            \
            const int64_t b = bh / H, h = bh % H;                                                           \
            for (int64_t w = 0; w < W; ++w) {                                                               \
                const int64_t n = valid_taps_##S(h, w, H, W, k, -1, taps, pix);                             \
                for (int64_t q = 0; q < n; ++q) {                                                           \
                    src[q] = gout + (b * H * W + pix[q]) * C;                                               \
                    weight_rows_##S(wt, b, pix[q], W, taps, 1, CW, sb, sj, st, sh, sw, buffer, rows, q);    \
                }                                                                                           \
                aggregate_pixel_##S(gx + (bh * W + w) * C, src, rows, n, G, CW);                            \
            }                                                                                               \
        }                                                                                                   \
        free(buffer); free(src); free(rows); free(taps); free(pix);                                         \
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
                for (int64_t t = 0; t < K2; ++t) {                                                          \
                    T *row = gw + WIDX(b, 0, t, h, w);                                                      \
                    for (int64_t c = 0; c < CW; ++c) row[c * sj] = acc[t * CW + c];                         \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        free(acc); free(taps); free(pix);                                                                   \
    }                                                                                                       \
}

SKA_KERNELS(float, f32)
SKA_KERNELS(double, f64)
