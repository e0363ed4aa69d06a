/* Small-kernel aggregation (SKA) CPU kernels: forward, grad_x, grad_w.
 *
 *   out[b, c, h, w] = sum_{i,j<k} x[b, c, h+i-r, w+j-r] * wt[b, c % CW, i*k+j, h, w],  r = k / 2
 *
 * x / out / grad_out / grad_x share one layout, chosen by the caller:
 *   NCHW: contiguous (B, C, H, W)  -> *_nchw, vectorised along a row. One work item is (b, weight channel jw,
 *         a block of up to CHANNEL_BLOCK of the G channels g*CW + jw that share jw's weight planes). Its planes are
 *         first copied into zero-bordered scratch planes, so every tap of a row vector is one unmasked load and
 *         the k*k weight vectors of that row position, loaded once, serve all the block's channels. A row is
 *         covered by full vectors, the last one overlapping its neighbour (rows narrower than one vector are
 *         computed in the scratch's zero margin and copied out). grad_x is a gather: each input pixel sums the
 *         outputs it fed, read through zero-bordered copies of grad_out and of the weights.
 *   NHWC: contiguous (B, H, W, C)  -> *_nhwc, vectorised over channels: per pixel, the k*k tap pixels (a zero pixel
 *         where a tap leaves the image, so there are no border branches) times their weight rows, accumulated in
 *         registers across the G channel groups. The B*H*W pixels are split evenly over the threads.
 * The weights wt / grad_w are a strided (B, CW, K2, H, W) view given by five element strides; the NCHW kernels
 * need flat (H, W) planes (stride_h == W, stride_w == 1). Nothing k*k-times larger than x is allocated. Every
 * kernel parallelises over disjoint outputs (no atomics) with OpenMP.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TAPS 49   /* k <= 7 */
#define CHANNEL_BLOCK 8 /* NCHW: channels that share one set of weight vectors */
/* one SIMD register per type, its width from the compile target (GCC/Clang vector extensions, unaligned
 * access): 64 bytes with AVX-512, else 32 (AVX2: a wider type would be split in two and spill registers) */
#if defined(__AVX512F__)
#define VEC_BYTES 64
#else
#define VEC_BYTES 32
#endif
typedef float V_f32 __attribute__((vector_size(VEC_BYTES), aligned(4)));
typedef float H_f32 __attribute__((vector_size(VEC_BYTES / 2), aligned(4)));
typedef double V_f64 __attribute__((vector_size(VEC_BYTES), aligned(8)));
typedef double H_f64 __attribute__((vector_size(VEC_BYTES / 2), aligned(8)));
typedef int32_t M_f32 __attribute__((vector_size(VEC_BYTES))); /* lane masks */
typedef int64_t M_f64 __attribute__((vector_size(VEC_BYTES)));
#define LANES_f32 (VEC_BYTES / 4)
#define LANES_f64 (VEC_BYTES / 8)
#define WIDX(b, j, t, h, w) ((b) * sb + (j) * sj + (t) * st + (h) * sh + (w) * sw)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 49") /* the tap loops of the NCHW kernels, whose trip count is a constant */

/* NCHW scratch geometry: rows are computed over Wv = max(W, lanes) columns, planes carry an r-wide zero border
 * (and the margin up to Wv) so every tap load of every row vector stays inside the plane */
typedef struct {
    int64_t H, W, r, Wv, Wp, plane, lanes;
    M_f32 mask_f32; /* all ones in the lanes below W */
    M_f64 mask_f64;
} grid_t;

static grid_t make_grid(int64_t H, int64_t W, int64_t k, int64_t lanes) {
    grid_t g = {H, W, k / 2, MAX(W, lanes), 0, 0, lanes, {0}, {0}};
    g.Wp = g.Wv + 2 * g.r;
    g.plane = (H + 2 * g.r) * g.Wp;
    for (int64_t l = 0; l < LANES_f32; ++l) g.mask_f32[l] = l < W ? -1 : 0;
    for (int64_t l = 0; l < LANES_f64; ++l) g.mask_f64[l] = l < W ? -1 : 0;
    return g;
}

/* start column of row vector v (the last one ends exactly at Wv) */
INLINE int64_t vector_start(const grid_t *g, int64_t v) { return MIN(v * g->lanes, g->Wv - g->lanes); }
INLINE int64_t vectors_per_row(const grid_t *g) { return (g->Wv + g->lanes - 1) / g->lanes; }

/* true for a row h of an (H, W) plane whose one-vector access (W < lanes) would run past the plane's end */
INLINE int ends_plane(int64_t h, int64_t H, int64_t W, int64_t lanes) { return W < lanes && h * W + lanes > H * W; }

/* flat pixel index of (h, w) + sign * d_t for every tap t of a k x k window, or -1 where it leaves the image */
static inline void tap_pixels(int64_t h, int64_t w, int64_t H, int64_t W, int64_t k, int64_t sign, int64_t *pix) {
    const int64_t r = k / 2;
    for (int64_t i = 0; i < k; ++i) {
        const int64_t hh = h + sign * (i - r);
        for (int64_t j = 0; j < k; ++j) {
            const int64_t ww = w + sign * (j - r);
            pix[i * k + j] = (hh < 0 || hh >= H || ww < 0 || ww >= W) ? -1 : hh * W + ww;
        }
    }
}

#define SKA_KERNELS(T, S)                                                                                           \
/* Row access for the NCHW kernels. A row narrower than a vector (W < lanes) is read and written as one whole       \
 * vector that runs into the next rows, which is harmless (the extra lanes are never used, and later rows are       \
 * written after this one) except near a plane's end, which may end its allocation: those rows (`last_row`,         \
 * `ends_plane`) go lane by lane. */                                                                                \
INLINE V_##S load_row_##S(const T *src, int64_t W, int last_row) {                                                  \
    if (W >= LANES_##S || !last_row) return *(const V_##S *)src;                                                    \
    V_##S v = {0};                                                                                                  \
    for (int64_t l = 0; l < W; ++l) v[l] = src[l];                                                                  \
    return v;                                                                                                       \
}                                                                                                                   \
                                                                                                                    \
INLINE void store_row_##S(T *dst, V_##S v, int64_t W, int last_row) {                                               \
    if (W >= LANES_##S || !last_row)                                                                                \
        *(V_##S *)dst = v;                                                                                          \
    else                                                                                                            \
        for (int64_t l = 0; l < W; ++l) dst[l] = v[l];                                                              \
}                                                                                                                   \
                                                                                                                    \
/* the (H, W) plane src (row stride src_row) into the interior of a zero-bordered scratch plane; lanes past W       \
 * are masked to zero so the scratch margin stays zero */                                                           \
static void pad_plane_##S(T *restrict dst, const T *restrict src, const grid_t *g, int64_t src_row) {               \
    for (int64_t h = 0; h < g->H; ++h) {                                                                            \
        T *d = dst + (h + g->r) * g->Wp + g->r;                                                                     \
        const T *s = src + h * src_row;                                                                             \
        if (g->W >= LANES_##S) {                                                                                    \
            for (int64_t w0 = 0; w0 < g->W - LANES_##S; w0 += LANES_##S) *(V_##S *)(d + w0) = *(const V_##S *)(s + w0); \
            *(V_##S *)(d + g->W - LANES_##S) = *(const V_##S *)(s + g->W - LANES_##S);                              \
        } else {                                                                                                    \
            *(V_##S *)d = (V_##S)((M_##S)load_row_##S(s, g->W, ends_plane(h, g->H, g->W, LANES_##S)) & g->mask_##S); \
        }                                                                                                           \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* outs[c][h*W + w] = sum_t src[c*plane + h*Wp + w + soff[t]] * wts[t*wplane + h*wrow + w + woff[t]] for the nc     \
 * scratch planes of src. K2 is a constant at every call site, so the tap loops unroll and, for 3x3, the nine       \
 * weight vectors of a row position stay in registers across the channels. */                                       \
INLINE void aggregate_planes_##S(T *const *outs, const T *src, int64_t nc, const T *wts, int64_t wplane,            \
                                 int64_t wrow, const int64_t *soff, const int64_t *woff, const grid_t *g,           \
                                 const int K2) {                                                                    \
    const int64_t nv = vectors_per_row(g);                                                                          \
    for (int64_t h = 0; h < g->H; ++h)                                                                              \
        for (int64_t v = 0; v < nv; ++v) {                                                                          \
            const int64_t w0 = vector_start(g, v);                                                                  \
            const int last = ends_plane(h, g->H, g->W, LANES_##S);                                                  \
            V_##S wv[MAX_TAPS];                                                                                     \
            UNROLL for (int t = 0; t < K2; ++t) wv[t] = load_row_##S(wts + t * wplane + h * wrow + w0 + woff[t], g->W, last); \
            for (int64_t c = 0; c < nc; ++c) {                                                                      \
                const T *s = src + c * g->plane + h * g->Wp + w0;                                                   \
                V_##S acc = *(const V_##S *)(s + soff[0]) * wv[0];                                                  \
                UNROLL for (int t = 1; t < K2; ++t) acc += *(const V_##S *)(s + soff[t]) * wv[t];                   \
                store_row_##S(outs[c] + h * g->W + w0, acc, g->W, last);                                            \
            }                                                                                                       \
        }                                                                                                           \
}                                                                                                                   \
                                                                                                                    \
static void aggregate_planes_k_##S(T *const *outs, const T *src, int64_t nc, const T *wts, int64_t wplane,          \
                                   int64_t wrow, const int64_t *soff, const int64_t *woff, const grid_t *g,         \
                                   int64_t k) {                                                                     \
    switch (k) {                                                                                                    \
    case 1: aggregate_planes_##S(outs, src, nc, wts, wplane, wrow, soff, woff, g, 1); break;                        \
    case 3: aggregate_planes_##S(outs, src, nc, wts, wplane, wrow, soff, woff, g, 9); break;                        \
    case 5: aggregate_planes_##S(outs, src, nc, wts, wplane, wrow, soff, woff, g, 25); break;                       \
    default: aggregate_planes_##S(outs, src, nc, wts, wplane, wrow, soff, woff, g, 49); break;                      \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
void ska_forward_nchw_##S(const T *restrict x, const T *restrict wt, T *restrict out, int64_t B, int64_t C,         \
                          int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,          \
                          int64_t sh, int64_t sw, int nthreads) {                                                   \
    (void)sw;                                                                                                       \
    const int64_t G = C / CW, K2 = k * k, HW = H * W, blocks = (G + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;             \
    const grid_t g = make_grid(H, W, k, LANES_##S);                                                                 \
    int64_t offsets[MAX_TAPS], no_offsets[MAX_TAPS] = {0};                                                          \
    for (int64_t t = 0; t < K2; ++t) offsets[t] = (t / k) * g.Wp + t % k;                                           \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
    {                                                                                                               \
        T *scratch = (T *)calloc(CHANNEL_BLOCK * g.plane, sizeof(T));                                               \
        _Pragma("omp for schedule(static)")                                                                         \
        for (int64_t item = 0; item < B * CW * blocks; ++item) {                                                    \
            const int64_t b = item / (CW * blocks), jw = item / blocks % CW, g0 = item % blocks * CHANNEL_BLOCK;    \
            const int64_t nc = MIN(CHANNEL_BLOCK, G - g0);                                                          \
            T *outs[CHANNEL_BLOCK];                                                                                 \
            for (int64_t c = 0; c < nc; ++c) {                                                                      \
                const int64_t plane = b * C + (g0 + c) * CW + jw;                                                   \
                pad_plane_##S(scratch + c * g.plane, x + plane * HW, &g, W);                                        \
                outs[c] = out + plane * HW;                                                                         \
            }                                                                                                       \
            aggregate_planes_k_##S(outs, scratch, nc, wt + WIDX(b, jw, 0, 0, 0), st, sh, offsets, no_offsets, &g, k); \
        }                                                                                                           \
        free(scratch);                                                                                              \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
void ska_grad_x_nchw_##S(const T *restrict gout, const T *restrict wt, T *restrict gx, int64_t B, int64_t C,        \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,           \
                         int64_t sh, int64_t sw, int nthreads) {                                                    \
    /* gather: gx[p] = sum_t gout[p - d_t] * wt[t, p - d_t], both read through zero-bordered copies */              \
    (void)sw;                                                                                                       \
    const int64_t G = C / CW, K2 = k * k, HW = H * W, blocks = (G + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;             \
    const grid_t g = make_grid(H, W, k, LANES_##S);                                                                 \
    int64_t offsets[MAX_TAPS];                                                                                      \
    for (int64_t t = 0; t < K2; ++t) offsets[t] = (2 * g.r - t / k) * g.Wp + 2 * g.r - t % k;                       \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
    {                                                                                                               \
        T *scratch = (T *)calloc((CHANNEL_BLOCK + K2) * g.plane, sizeof(T));                                        \
        T *wscratch = scratch + CHANNEL_BLOCK * g.plane;                                                            \
        _Pragma("omp for schedule(static)")                                                                         \
        for (int64_t item = 0; item < B * CW * blocks; ++item) {                                                    \
            const int64_t b = item / (CW * blocks), jw = item / blocks % CW, g0 = item % blocks * CHANNEL_BLOCK;    \
            const int64_t nc = MIN(CHANNEL_BLOCK, G - g0);                                                          \
            T *outs[CHANNEL_BLOCK];                                                                                 \
            for (int64_t c = 0; c < nc; ++c) {                                                                      \
                const int64_t plane = b * C + (g0 + c) * CW + jw;                                                   \
                pad_plane_##S(scratch + c * g.plane, gout + plane * HW, &g, W);                                     \
                outs[c] = gx + plane * HW;                                                                          \
            }                                                                                                       \
            for (int64_t t = 0; t < K2; ++t)                                                                        \
                pad_plane_##S(wscratch + t * g.plane, wt + WIDX(b, jw, t, 0, 0), &g, sh);                           \
            aggregate_planes_k_##S(outs, scratch, nc, wscratch, g.plane, g.Wp, offsets, offsets, &g, k);            \
        }                                                                                                           \
        free(scratch);                                                                                              \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* gw[t][h*W + w] = sum_c gsrc[c*plane + (h+r)*Wp + w + r] * xsrc[c*plane + h*Wp + w + offsets[t]] over the nc      \
 * scratch planes; the K2 accumulators of a row position stay in registers across the channels */                   \
INLINE void correlate_planes_##S(T *gw, int64_t gw_plane, const T *gsrc, const T *xsrc, int64_t nc,                 \
                                 const int64_t *offsets, const grid_t *g, const int K2) {                           \
    const int64_t nv = vectors_per_row(g), centre = g->r * g->Wp + g->r;                                            \
    for (int64_t h = 0; h < g->H; ++h)                                                                              \
        for (int64_t v = 0; v < nv; ++v) {                                                                          \
            const int64_t w0 = vector_start(g, v);                                                                  \
            const int last = ends_plane(h, g->H, g->W, LANES_##S);                                                  \
            V_##S acc[MAX_TAPS];                                                                                    \
            UNROLL for (int t = 0; t < K2; ++t) acc[t] = (V_##S){0};                                                \
            for (int64_t c = 0; c < nc; ++c) {                                                                      \
                const int64_t o = c * g->plane + h * g->Wp + w0;                                                    \
                const V_##S go = *(const V_##S *)(gsrc + o + centre);                                               \
                UNROLL for (int t = 0; t < K2; ++t) acc[t] += go * *(const V_##S *)(xsrc + o + offsets[t]);         \
            }                                                                                                       \
            UNROLL for (int t = 0; t < K2; ++t) store_row_##S(gw + t * gw_plane + h * g->W + w0, acc[t], g->W, last); \
        }                                                                                                           \
}                                                                                                                   \
                                                                                                                    \
void ska_grad_w_nchw_##S(const T *restrict gout, const T *restrict x, T *restrict gw, int64_t B, int64_t C,         \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,           \
                         int64_t sh, int64_t sw, int nthreads) {                                                    \
    /* gw[j, t, p] = sum_g gout[g*CW + j, p] * x[g*CW + j, p + d_t], x zero outside the image */                    \
    (void)sh, (void)sw;                                                                                             \
    const int64_t G = C / CW, K2 = k * k, HW = H * W;                                                               \
    const grid_t g = make_grid(H, W, k, LANES_##S);                                                                 \
    int64_t offsets[MAX_TAPS];                                                                                      \
    for (int64_t t = 0; t < K2; ++t) offsets[t] = (t / k) * g.Wp + t % k;                                           \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
    {                                                                                                               \
        T *gscratch = (T *)calloc(2 * G * g.plane, sizeof(T)), *xscratch = gscratch + G * g.plane;                  \
        _Pragma("omp for schedule(static)")                                                                         \
        for (int64_t item = 0; item < B * CW; ++item) {                                                             \
            const int64_t b = item / CW, jw = item % CW;                                                            \
            for (int64_t c = 0; c < G; ++c) {                                                                       \
                const int64_t plane = b * C + c * CW + jw;                                                          \
                pad_plane_##S(gscratch + c * g.plane, gout + plane * HW, &g, W);                                    \
                pad_plane_##S(xscratch + c * g.plane, x + plane * HW, &g, W);                                       \
            }                                                                                                       \
            T *dst = gw + WIDX(b, jw, 0, 0, 0);                                                                     \
            switch (k) {                                                                                            \
            case 1: correlate_planes_##S(dst, st, gscratch, xscratch, G, offsets, &g, 1); break;                    \
            case 3: correlate_planes_##S(dst, st, gscratch, xscratch, G, offsets, &g, 9); break;                    \
            case 5: correlate_planes_##S(dst, st, gscratch, xscratch, G, offsets, &g, 25); break;                   \
            default: correlate_planes_##S(dst, st, gscratch, xscratch, G, offsets, &g, 49); break;                  \
            }                                                                                                       \
        }                                                                                                           \
        free(gscratch);                                                                                             \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* out[g*CW + c] = sum_q src[q][g*CW + c] * wrow[q][c] for all g, c: the NHWC inner product of one pixel.           \
 * Channel chunks of one and half a SIMD register keep the n weight vectors in registers across the G groups;       \
 * the 9-tap case is unrolled at compile time. */                                                                   \
static inline void aggregate_pixel_##S(T *restrict out, const T *const *src, const T *const *wrow,                  \
                                       int64_t n, int64_t G, int64_t CW) {                                          \
    int64_t c0 = 0;                                                                                                 \
    for (; c0 + LANES_##S <= CW; c0 += LANES_##S) {                                                                 \
        V_##S wv[MAX_TAPS];                                                                                         \
        if (n == 9) {                                                                                               \
            for (int q = 0; q < 9; ++q) wv[q] = *(const V_##S *)(wrow[q] + c0);                                     \
            for (int64_t g = 0; g < G; ++g) {                                                                       \
                const int64_t o = g * CW + c0;                                                                      \
                V_##S acc = *(const V_##S *)(src[0] + o) * wv[0];                                                   \
                for (int q = 1; q < 9; ++q) acc += *(const V_##S *)(src[q] + o) * wv[q];                            \
                *(V_##S *)(out + o) = acc;                                                                          \
            }                                                                                                       \
        } else {                                                                                                    \
            for (int64_t q = 0; q < n; ++q) wv[q] = *(const V_##S *)(wrow[q] + c0);                                 \
            for (int64_t g = 0; g < G; ++g) {                                                                       \
                const int64_t o = g * CW + c0;                                                                      \
                V_##S acc = {0};                                                                                    \
                for (int64_t q = 0; q < n; ++q) acc += *(const V_##S *)(src[q] + o) * wv[q];                        \
                *(V_##S *)(out + o) = acc;                                                                          \
            }                                                                                                       \
        }                                                                                                           \
    }                                                                                                               \
    for (; c0 + LANES_##S / 2 <= CW; c0 += LANES_##S / 2) {                                                         \
        H_##S wv[MAX_TAPS];                                                                                         \
        for (int64_t q = 0; q < n; ++q) wv[q] = *(const H_##S *)(wrow[q] + c0);                                     \
        for (int64_t g = 0; g < G; ++g) {                                                                           \
            const int64_t o = g * CW + c0;                                                                          \
            H_##S acc = {0};                                                                                        \
            for (int64_t q = 0; q < n; ++q) acc += *(const H_##S *)(src[q] + o) * wv[q];                            \
            *(H_##S *)(out + o) = acc;                                                                              \
        }                                                                                                           \
    }                                                                                                               \
    for (; c0 < CW; ++c0)                                                                                           \
        for (int64_t g = 0; g < G; ++g) {                                                                           \
            T acc = 0;                                                                                              \
            for (int64_t q = 0; q < n; ++q) acc += src[q][g * CW + c0] * wrow[q][c0];                               \
            out[g * CW + c0] = acc;                                                                                 \
        }                                                                                                           \
}                                                                                                                   \
                                                                                                                    \
/* the CW weights of tap t at pixel p: a pointer into wt when channels are unit-stride, else a copy in `slot` */    \
static inline const T *weight_row_##S(const T *wt, int64_t b, int64_t p, int64_t W, int64_t t, int64_t CW,          \
                                      int64_t sb, int64_t sj, int64_t st, int64_t sh, int64_t sw, T *slot) {        \
    const T *row = wt + WIDX(b, 0, t, p / W, p % W);                                                                \
    if (sj == 1) return row;                                                                                        \
    for (int64_t c = 0; c < CW; ++c) slot[c] = row[c * sj];                                                         \
    return slot;                                                                                                    \
}                                                                                                                   \
                                                                                                                    \
void ska_forward_nhwc_##S(const T *restrict x, const T *restrict wt, T *restrict out, int64_t B, int64_t C,         \
                          int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,          \
                          int64_t sh, int64_t sw, int nthreads) {                                                   \
    const int64_t G = C / CW, K2 = k * k, r = k / 2, HW = H * W;                                                    \
    int64_t offsets[MAX_TAPS];                                                                                      \
    for (int64_t q = 0; q < K2; ++q) offsets[q] = ((q / k - r) * W + (q % k - r)) * C;                              \
    const T *zero = (const T *)calloc(C, sizeof(T)); /* the pixel outside the image */                              \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
    {                                                                                                               \
        T *buffer = (T *)malloc(sizeof(T) * K2 * CW);                                                               \
        const T *src[MAX_TAPS], *rows[MAX_TAPS];                                                                    \
        int64_t pix[MAX_TAPS];                                                                                      \
        _Pragma("omp for schedule(static)")                                                                         \
        for (int64_t p = 0; p < B * HW; ++p) {                                                                      \
            const int64_t b = p / HW, h = p % HW / W, w = p % W;                                                    \
            const T *center = x + p * C;                                                                            \
            if (h >= r && h + r < H && w >= r && w + r < W) { /* all taps inside: fixed offsets */                  \
                for (int64_t q = 0; q < K2; ++q) src[q] = center + offsets[q];                                      \
            } else {                                                                                                \
                tap_pixels(h, w, H, W, k, 1, pix);                                                                  \
                for (int64_t q = 0; q < K2; ++q) src[q] = pix[q] < 0 ? zero : x + (b * HW + pix[q]) * C;            \
            }                                                                                                       \
            for (int64_t q = 0; q < K2; ++q)                                                                        \
                rows[q] = weight_row_##S(wt, b, p % HW, W, q, CW, sb, sj, st, sh, sw, buffer + q * CW);             \
            aggregate_pixel_##S(out + p * C, src, rows, K2, G, CW);                                                 \
        }                                                                                                           \
        free(buffer);                                                                                               \
    }                                                                                                               \
    free((void *)zero);                                                                                             \
}                                                                                                                   \
                                                                                                                    \
void ska_grad_x_nhwc_##S(const T *restrict gout, const T *restrict wt, T *restrict gx, int64_t B, int64_t C,        \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,           \
                         int64_t sh, int64_t sw, int nthreads) {                                                    \
    /* gather: gx[p] = sum_t gout[q] * wt[., t, q] with q = p - d_t (a zero pixel and zero weights outside) */      \
    const int64_t G = C / CW, K2 = k * k, HW = H * W;                                                               \
    const T *zero = (const T *)calloc(MAX(C, CW), sizeof(T));                                                       \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
    {                                                                                                               \
        T *buffer = (T *)malloc(sizeof(T) * K2 * CW);                                                               \
        const T *src[MAX_TAPS], *rows[MAX_TAPS];                                                                    \
        int64_t pix[MAX_TAPS];                                                                                      \
        _Pragma("omp for schedule(static)")                                                                         \
        for (int64_t p = 0; p < B * HW; ++p) {                                                                      \
            const int64_t b = p / HW, h = p % HW / W, w = p % W;                                                    \
            tap_pixels(h, w, H, W, k, -1, pix);                                                                     \
            for (int64_t q = 0; q < K2; ++q) {                                                                      \
                src[q] = pix[q] < 0 ? zero : gout + (b * HW + pix[q]) * C;                                          \
                rows[q] = pix[q] < 0 ? zero                                                                         \
                                     : weight_row_##S(wt, b, pix[q], W, q, CW, sb, sj, st, sh, sw, buffer + q * CW); \
            }                                                                                                       \
            aggregate_pixel_##S(gx + p * C, src, rows, K2, G, CW);                                                  \
        }                                                                                                           \
        free(buffer);                                                                                               \
    }                                                                                                               \
    free((void *)zero);                                                                                             \
}                                                                                                                   \
                                                                                                                    \
void ska_grad_w_nhwc_##S(const T *restrict gout, const T *restrict x, T *restrict gw, int64_t B, int64_t C,         \
                         int64_t H, int64_t W, int64_t CW, int64_t k, int64_t sb, int64_t sj, int64_t st,           \
                         int64_t sh, int64_t sw, int nthreads) {                                                    \
    /* gw[j, t, p] = sum_g gout[p][g*CW + j] * x[p + d_t][g*CW + j]; x is a zero pixel outside the image */         \
    const int64_t G = C / CW, K2 = k * k, HW = H * W;                                                               \
    const T *zero = (const T *)calloc(C, sizeof(T));                                                                \
    _Pragma("omp parallel num_threads(nthreads)")                                                                   \
    {                                                                                                               \
        T *acc = (T *)malloc(sizeof(T) * CW);                                                                       \
        int64_t pix[MAX_TAPS];                                                                                      \
        _Pragma("omp for schedule(static)")                                                                         \
        for (int64_t p = 0; p < B * HW; ++p) {                                                                      \
            const int64_t b = p / HW, h = p % HW / W, w = p % W;                                                    \
            const T *gp = gout + p * C;                                                                             \
            tap_pixels(h, w, H, W, k, 1, pix);                                                                      \
            for (int64_t t = 0; t < K2; ++t) {                                                                      \
                const T *xp = pix[t] < 0 ? zero : x + (b * HW + pix[t]) * C;                                        \
                for (int64_t c = 0; c < CW; ++c) acc[c] = gp[c] * xp[c];                                            \
                for (int64_t g = 1; g < G; ++g) {                                                                   \
                    const T *gs = gp + g * CW, *xs = xp + g * CW;                                                   \
                    for (int64_t c = 0; c < CW; ++c) acc[c] += gs[c] * xs[c];                                       \
                }                                                                                                   \
                T *row = gw + WIDX(b, 0, t, h, w);                                                                  \
                for (int64_t c = 0; c < CW; ++c) row[c * sj] = acc[c];                                              \
            }                                                                                                       \
        }                                                                                                           \
        free(acc);                                                                                                  \
    }                                                                                                               \
    free((void *)zero);                                                                                             \
}

SKA_KERNELS(float, f32)
SKA_KERNELS(double, f64)
