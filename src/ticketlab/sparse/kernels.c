/* Sparse training kernels for masked Linear and Conv2d layers (float32, CPU), loaded by ticketlab.sparse.kernels.

   Layout: a batch of B rows of width m travels "tiled", as (nt, m, T) with T = 64 batch columns per tile
   (zero-padded): the rows a sparse weight selects are then contiguous runs of T floats, so every nonzero
   costs T fused multiply-adds over one cache-resident run (what SparseProp's batch-innermost layout does),
   and one tile of the input (m x T floats) stays in L2 while every output row reads it. All loops have a
   fixed order of summation, so results do not depend on the thread count. */
#include <math.h>
#include <stdint.h>

#define T 64
/* Nonzeros ahead whose input rows are prefetched: the rows a sparse weight selects are random, so the hardware
   prefetcher cannot see them coming and every nonzero would wait on L2; fetching 16 ahead made the forward of a
   5%-dense 4096x4096 layer 4x faster (batch 256, one thread). */
#define PF 16

static inline void prefetch_row(const float *r) {
    for (int c = 0; c < T; c += 16) __builtin_prefetch(r + c);
}

/* o[i] += v * x[i] for i < n: every kernel's inner run (n = T in the tiled ones, a plane in the direct conv). */
static inline void axpy(float *o, float v, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) o[i] += v * x[i];
}

/* sum_i a[i] * b[i] in 16 lanes reduced by a fixed tree (not a serial chain of 16), then the tail. */
static inline float dot(const float *a, const float *b, int64_t n) {
    float s[16];
    int64_t i = n < 16 ? 0 : 16;
    for (int l = 0; l < 16; l++) s[l] = i ? a[l] * b[l] : 0.f;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) s[l] += a[i + l] * b[i + l];
    float tail = 0.f;
    for (; i < n; i++) tail += a[i] * b[i];
    for (int l = 0; l < 8; l++) s[l] += s[l + 8];
    for (int l = 0; l < 4; l++) s[l] += s[l + 4];
    return ((s[0] + s[2]) + (s[1] + s[3])) + tail;
}

/* out[t, i, :] = bias[i] + sum_{k in ptr[i]..ptr[i+1]} val[k] * in[t, idx[k], :]   (bias may be NULL) */
void tl_spmm(int64_t nt, int64_t n, int64_t m, const int64_t *ptr, const int64_t *idx, const float *val,
             const float *bias, const float *in, float *out, int nthreads) {
    for (int64_t t = 0; t < nt; t++) {
        const float *it = in + t * m * T;
        float *ot = out + t * n * T;
        const int64_t end = ptr[n];
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float acc[T];
            const float b0 = bias ? bias[i] : 0.f;
            for (int b = 0; b < T; b++) acc[b] = b0;
            for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {
                if (k + PF < end) prefetch_row(it + idx[k + PF] * T);
                axpy(acc, val[k], it + idx[k] * T, T);
            }
            float *o = ot + i * T;
            for (int b = 0; b < T; b++) o[b] = acc[b];
        }
    }
}

/* g[k] = sum_t sum_b a[t, i, b] * c[t, idx[k], b] for k in row i: the weight gradient at the kept positions
   (a = output gradient (nt, n, T), c = input (nt, m, T)); tiles are summed in order. */
void tl_sddmm(int64_t nt, int64_t n, int64_t m, const int64_t *ptr, const int64_t *idx, const float *a,
              const float *c, float *g, int nthreads) {
    for (int64_t t = 0; t < nt; t++) {
        const float *at = a + t * n * T, *ct = c + t * m * T;
        const int64_t end = ptr[n];
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float *ar = at + i * T;
            for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {
                if (k + PF < end) prefetch_row(ct + idx[k + PF] * T);
                const float tot = dot(ar, ct + idx[k] * T, T);
                g[k] = t ? g[k] + tot : tot;
            }
        }
    }
}

/* torch.optim.SGD's update (dampening 0) at the kept positions pos[k] of a dense weight w, with the weight's
   gradient there gc[k]: d = gc + wd * w; buf = d on the first step, else mom * buf + d; w -= lr * (nesterov ?
   d + mom * buf : buf). Pruned positions (weight, gradient and state all zero) would not move. The new weights
   are also written to the layer's compact copies (vals in row order, cvals at cslot[k] in column order). */
void tl_sgd(int64_t nnz, const int64_t *pos, const float *gc, float *w, float *buf, float lr, float wd, float mom,
            int nesterov, int first, float *vals, float *cvals, const int64_t *cslot, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t k = 0; k < nnz; k++) {
        const int64_t p = pos[k];
        float d = gc[k];
        if (wd != 0.f) d += wd * w[p];
        if (buf) {
            float b = first ? d : mom * buf[p] + d;
            buf[p] = b;
            d = nesterov ? d + mom * b : b;
        }
        const float wk = w[p] - lr * d;
        w[p] = wk;
        vals[k] = wk;
        cvals[cslot[k]] = wk;
    }
}

/* torch.optim.Adam / AdamW's update at the kept positions (amsgrad off): coupled weight decay (Adam: d = gc +
   wd * w) or decoupled (AdamW: w *= 1 - lr * wd); m, v the moments; step_size = lr / (1 - beta1^t),
   bc2_sqrt = sqrt(1 - beta2^t). */
void tl_adam(int64_t nnz, const int64_t *pos, const float *gc, float *w, float *m, float *v, float lr, float beta1,
             float beta2, float eps, float wd, int decoupled, float step_size, float bc2_sqrt, float *vals,
             float *cvals, const int64_t *cslot, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t k = 0; k < nnz; k++) {
        const int64_t p = pos[k];
        float d = gc[k];
        if (wd != 0.f) {
            if (decoupled)
                w[p] *= 1.f - lr * wd;
            else
                d += wd * w[p];
        }
        const float mk = m[p] + (d - m[p]) * (1.f - beta1);
        const float vk = beta2 * v[p] + (1.f - beta2) * d * d;
        m[p] = mk;
        v[p] = vk;
        const float wk = w[p] - step_size * mk / (sqrtf(vk) / bc2_sqrt + eps);
        w[p] = wk;
        vals[k] = wk;
        cvals[cslot[k]] = wk;
    }
}

/* The kept weights of a dense weight w, in row order (vals[k] = w[pos[k]]) and in column order (cvals[cslot[k]]). */
void tl_gather(int64_t nnz, const int64_t *pos, const float *w, const int64_t *cslot, float *vals, float *cvals,
               int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t k = 0; k < nnz; k++) {
        const float v = w[pos[k]];
        vals[k] = v;
        cvals[cslot[k]] = v;
    }
}

/* Direct sparse convolution, stride 1 (any dilation): planes are kept in "padded width" layout, the input
   zero-padded to (Hp, Wp) (plus slack past its end) and the output computed as Ho rows of Wp columns, of which
   the last Wp - Wo are junk and cut off afterwards. Then a kept weight (ci, ky, kx) of output channel co adds
   one shifted copy of input plane ci to output plane co: a single run of Ho * Wp fused multiply-adds, offset
   by ky * dil * Wp + kx * dil, with no per-row loop or border test. idx[k] = ci * kh * kw + ky * kw + kx. */
static inline int64_t conv_shift(int64_t r, int64_t kh, int64_t kw, int64_t dil, int64_t wp, int64_t *ci) {
    *ci = r / (kh * kw);
    const int64_t q = r % (kh * kw);
    return (q / kw) * dil * wp + (q % kw) * dil;
}

/* out[b, co] (Ho x Wp) = bias[co] + sum_k val[k] * shift(x[b, ci_k]); x (B, Ci, plane) with plane = Hp * Wp. */
void tl_conv_fwd(int64_t B, int64_t ci_n, int64_t plane, int64_t co_n, int64_t len, int64_t kh, int64_t kw,
                 int64_t dil, int64_t wp, const int64_t *ptr, const int64_t *idx, const float *val,
                 const float *bias, const float *x, float *out, int nthreads) {
#pragma omp parallel for collapse(2) num_threads(nthreads) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t co = 0; co < co_n; co++) {
            float *o = out + (b * co_n + co) * len;
            const float b0 = bias ? bias[co] : 0.f;
            for (int64_t i = 0; i < len; i++) o[i] = b0;
            for (int64_t k = ptr[co]; k < ptr[co + 1]; k++) {
                int64_t ci;
                const int64_t s = conv_shift(idx[k], kh, kw, dil, wp, &ci);
                axpy(o, val[k], x + (b * ci_n + ci) * plane + s, len);
            }
        }
    }
}

/* The input gradient in the padded layout: gx[b, ci] (plane) = sum over kept (co, ky, kx) of column ci of
   val * gy[b, co] shifted back; gy (B, Co, len) with zeros in its junk columns. By input channel (CSC: cptr,
   cidx = co, cr = the weight's (ci, ky, kx) index), so no two threads write one plane. */
void tl_conv_bwd_input(int64_t B, int64_t ci_n, int64_t plane, int64_t co_n, int64_t len, int64_t kh, int64_t kw,
                       int64_t dil, int64_t wp, const int64_t *cptr, const int64_t *cidx, const int64_t *cr,
                       const float *cval, const float *gy, float *gx, int nthreads) {
#pragma omp parallel for collapse(2) num_threads(nthreads) schedule(static)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t ci = 0; ci < ci_n; ci++) {
            float *g = gx + (b * ci_n + ci) * plane;
            for (int64_t i = 0; i < plane; i++) g[i] = 0.f;
            for (int64_t k = cptr[ci]; k < cptr[ci + 1]; k++) {
                int64_t unused;
                const int64_t s = conv_shift(cr[k], kh, kw, dil, wp, &unused);
                axpy(g + s, cval[k], gy + (b * co_n + cidx[k]) * len, len);
            }
        }
    }
}

/* The weight gradient at the kept positions: g[k] = sum_b dot(gy[b, co], shift(x[b, ci_k])), summed over b in
   order; gy with zeros in its junk columns. Example by example (b outer), so one example's planes stay in cache
   while every kept weight reads them. */
void tl_conv_bwd_weight(int64_t B, int64_t ci_n, int64_t plane, int64_t co_n, int64_t len, int64_t kh, int64_t kw,
                        int64_t dil, int64_t wp, const int64_t *ptr, const int64_t *idx, const float *gy,
                        const float *x, float *g, int nthreads) {
    for (int64_t b = 0; b < B; b++) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (int64_t co = 0; co < co_n; co++) {
            const float *gp = gy + (b * co_n + co) * len;
            for (int64_t k = ptr[co]; k < ptr[co + 1]; k++) {
                int64_t ci;
                const int64_t s = conv_shift(idx[k], kh, kw, dil, wp, &ci);
                const float d = dot(gp, x + (b * ci_n + ci) * plane + s, len);
                g[k] = b ? g[k] + d : d;
            }
        }
    }
}
