/* Sparse training kernels for masked Linear layers (float32, CPU), loaded by ticketlab.sparse.kernels.

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
                const float v = val[k];
                const float *r = it + idx[k] * T;
                for (int b = 0; b < T; b++) acc[b] += v * r[b];
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
                const float *cr = ct + idx[k] * T;
                float s[16];
                for (int l = 0; l < 16; l++) s[l] = ar[l] * cr[l];
                for (int b = 16; b < T; b += 16)
                    for (int l = 0; l < 16; l++) s[l] += ar[b + l] * cr[b + l];
                for (int l = 0; l < 8; l++) s[l] += s[l + 8];  /* a fixed tree, not a serial chain of 16 */
                for (int l = 0; l < 4; l++) s[l] += s[l + 4];
                const float tot = (s[0] + s[2]) + (s[1] + s[3]);
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
