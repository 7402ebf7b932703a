/* Convolutions that skip zero inputs (prime.sparse_conv): for spike frames, mostly zero.
 *
 * Inputs are channels-last frames x [N][H][W][Ci], compressed per frame into its nonzero
 * elements: offsets [N + 1] (int64), index (int32, position (y * W + x) * Ci + c within the
 * frame) and value (float). Stride 1, zero padding `pad`, kernel KH x KW.
 *
 * forward: out [N][Ho][Wo][Co] = sum over nonzeros of value * w[kh][kw][c][:]; each nonzero
 *     adds its weight rows to the (up to KH * KW) outputs it reaches.
 * weight_grad: dw [KH][KW][Ci][Co] = sum over nonzeros of value * grad[n][oy][ox][:]. The
 *     frames are split into CHUNKS fixed chunks, each summed on its own and the chunks added
 *     in order, so the result does not depend on the number of threads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

enum { CHUNKS = 16 };

typedef struct {
    int64_t H, W, Ci, Co, KH, KW, pad, Ho, Wo;
} conv_shape;

/* nonzeros per frame: counts[n] for x [N][m] */
void count_nonzero(const float *x, int64_t N, int64_t m, int64_t *counts)
{
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * m;
        int64_t count = 0;
        for (int64_t i = 0; i < m; i++)
            count += row[i] != 0.0f;
        counts[n] = count;
    }
}

/* the nonzeros of each frame x[n] into index/value[offsets[n] : offsets[n + 1]] */
void gather_nonzero(const float *x, int64_t N, int64_t m, const int64_t *offsets,
                    int32_t *index, float *value)
{
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float *row = x + n * m;
        int64_t at = offsets[n];
        for (int64_t i = 0; i < m; i++)
            if (row[i] != 0.0f) {
                index[at] = (int32_t)i;
                value[at++] = row[i];
            }
    }
}

/* An input element (position i of its frame) meets output (oy, ox) through kernel tap
 * (y + pad - oy, x + pad - ox), for oy in [y0, y1) and ox in [x0, x1). For each such pair,
 * add v times a row of Co floats: forward reads the tap's weights and adds to the output;
 * the weight gradient reads the output's gradient and adds to the tap (to_taps). */
static inline void scatter(int64_t i, float v, const float *restrict from, float *restrict to,
                           int to_taps, conv_shape s)
{
    const int64_t c = i % s.Ci, x = i / s.Ci % s.W, y = i / s.Ci / s.W;
    const int64_t y0 = y + s.pad - (s.KH - 1) > 0 ? y + s.pad - (s.KH - 1) : 0;
    const int64_t x0 = x + s.pad - (s.KW - 1) > 0 ? x + s.pad - (s.KW - 1) : 0;
    const int64_t y1 = y + s.pad < s.Ho ? y + s.pad + 1 : s.Ho;
    const int64_t x1 = x + s.pad < s.Wo ? x + s.pad + 1 : s.Wo;
    for (int64_t oy = y0; oy < y1; oy++)
        for (int64_t ox = x0; ox < x1; ox++) {
            const int64_t out = (oy * s.Wo + ox) * s.Co;
            const int64_t tap = (((y + s.pad - oy) * s.KW + x + s.pad - ox) * s.Ci + c) * s.Co;
            const float *restrict src = from + (to_taps ? out : tap);
            float *restrict dst = to + (to_taps ? tap : out);
            for (int64_t j = 0; j < s.Co; j++)
                dst[j] += v * src[j];
        }
}

VECTOR_CLONES void sparse_conv_forward(const int64_t *offsets, const int32_t *index,
                                       const float *value, const float *w, float *out,
                                       int64_t N, conv_shape s)
{
    const int64_t frame = s.Ho * s.Wo * s.Co;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *restrict o = out + n * frame;
        memset(o, 0, sizeof(float) * frame);
        for (int64_t k = offsets[n]; k < offsets[n + 1]; k++)
            scatter(index[k], value[k], w, o, 0, s);
    }
}

VECTOR_CLONES int sparse_conv_weight_grad(const int64_t *offsets, const int32_t *index,
                                          const float *value, const float *grad, float *dw,
                                          int64_t N, conv_shape s)
{
    const int64_t size = s.KH * s.KW * s.Ci * s.Co, frame = s.Ho * s.Wo * s.Co;
    float *partial = calloc((size_t)(CHUNKS * size), sizeof(float));
    if (!partial)
        return 1;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t chunk = 0; chunk < CHUNKS; chunk++) {
        float *acc = partial + chunk * size;
        for (int64_t n = N * chunk / CHUNKS; n < N * (chunk + 1) / CHUNKS; n++) {
            const float *g = grad + n * frame;
            for (int64_t k = offsets[n]; k < offsets[n + 1]; k++)
                scatter(index[k], value[k], g, acc, 1, s);
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < size; i++) {
        float sum = 0.0f;
        for (int64_t chunk = 0; chunk < CHUNKS; chunk++)
            sum += partial[chunk * size + i];
        dw[i] = sum;
    }
    free(partial);
    return 0;
}
