/* The LIF scans of prime.neurons in C: the same float32 arithmetic as the PyTorch kernels,
 * operation by operation (built with -ffp-contract=off), so results are equal bit for bit.
 * Each neuron's membrane stays in cache over all T steps: a scan reads its currents and
 * writes its output once, instead of a dozen elementwise passes over memory per step.
 *
 * lif_scan_*: tensors [T][n] (step-major, any layout of the n elements of a step).
 * lif_pool_scan_*: the scan fused with non-overlapping k x k average pooling of the spikes,
 *     on channels-last frames: currents [T][B][H][W][C] -> pooled [T][B][H/k][W/k][C]; the
 *     spikes themselves are never written. Backward takes d loss / d pooled.
 * The state byte per element and step holds FIRED | IN_WINDOW | POSITIVE (see LIFScan).
 * The forward scans start at rest (membrane NULL) or from given membranes [n] (a step's
 *     layout, as lif_step's state), which they overwrite with the membranes after the last
 *     step (reset to 0 where the neuron fired), so a sequence runs in chunks of steps.
 * Work is split over OpenMP threads: PyTorch's own pool where PyTorch uses libgomp.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* BLOCK: elements a work item scans (its membranes stay in L1/L2 cache over all T steps) */
enum { FIRED = 1, IN_WINDOW = 2, POSITIVE = 4, BLOCK = 8192, MAX_ROW = BLOCK };

/* x86-64 with GCC: a copy of each kernel for AVX-512, AVX2 and baseline SSE2, picked at load
 * time for this CPU (same arithmetic, wider vectors) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* below this many elements per step, one thread */
#define PARALLEL_MIN 65536

typedef struct {
    float beta, slope, threshold, width;
} lif_params;

/* One step of m neurons: membranes mem (0 where reset) and currents -> spikes (0/1), and the
 * state bytes if bits is not NULL. Branch-free, so the compiler vectorizes it. */
static inline void step_row(float *restrict mem, const float *restrict current,
                            float *restrict spike, uint8_t *restrict bits, int64_t m,
                            lif_params p)
{
    if (!bits) {
        for (int64_t i = 0; i < m; i++) {
            float u = mem[i] * p.beta + current[i];
            u = u > 0.0f ? u : u * p.slope;
            spike[i] = u > p.threshold ? 1.0f : 0.0f;
            mem[i] = u > p.threshold ? 0.0f : u; /* reset to 0 where the neuron fired */
        }
        return;
    }
    for (int64_t i = 0; i < m; i++) {
        float u = mem[i] * p.beta + current[i];
        u = u > 0.0f ? u : u * p.slope;
        const int fired = u > p.threshold;
        spike[i] = fired ? 1.0f : 0.0f;
        bits[i] = (uint8_t)(fired | (fabsf(u - p.threshold) < p.width) << 1 | (u > 0.0f) << 2);
        mem[i] = fired ? 0.0f : u;
    }
}

/* The membranes m neurons start from: 0, or membrane (reset to 0 above threshold, as
 * lif_step resets its state). */
static inline void start_row(float *restrict mem, const float *restrict membrane, int64_t m,
                             lif_params p)
{
    for (int64_t i = 0; i < m; i++)
        mem[i] = membrane && !(membrane[i] > p.threshold) ? membrane[i] : 0.0f;
}

/* One backward step of m neurons: d loss / d spikes at t and d loss / d current at t + 1
 * (later; NULL at the last step) -> d loss / d current at t (out). */
static inline void backward_row(const float *restrict grad_spike, const uint8_t *restrict bits,
                                const float *restrict later, float *restrict out, int64_t m,
                                lif_params p)
{
    const float two_width = 2.0f * p.width;
    if (!later) {
        for (int64_t i = 0; i < m; i++) {
            const float g = grad_spike[i] * ((bits[i] & IN_WINDOW) ? 1.0f : 0.0f) / two_width;
            out[i] = (bits[i] & POSITIVE) ? g : g * p.slope;
        }
        return;
    }
    for (int64_t i = 0; i < m; i++) {
        /* through the spike (surrogate window), then through U_{t+1} unless U_t fired, then
         * through the LeakyReLU */
        float g = grad_spike[i] * ((bits[i] & IN_WINDOW) ? 1.0f : 0.0f) / two_width;
        g = g + later[i] * p.beta * ((bits[i] & FIRED) ? 0.0f : 1.0f);
        out[i] = (bits[i] & POSITIVE) ? g : g * p.slope;
    }
}

/* One pooled row: spikes of k input rows [k][W][C] -> averages [W/k][C] (out). Sums are
 * spike counts, exact in any order: rows first (long contiguous runs), then columns. */
static inline void pool_row(const float *restrict spikes, float *restrict out, int64_t W,
                            int64_t C, int64_t k, float area)
{
    float sum[BLOCK];
    const int64_t n = W * C;
    for (int64_t j = 0; j < n; j++)
        sum[j] = spikes[j];
    for (int64_t dh = 1; dh < k; dh++)
        for (int64_t j = 0; j < n; j++)
            sum[j] += spikes[dh * n + j];
    for (int64_t wo = 0; wo < W / k; wo++) {
        const float *s = sum + wo * k * C;
        float *o = out + wo * C;
        for (int64_t c = 0; c < C; c++)
            o[c] = s[c];
        for (int64_t dw = 1; dw < k; dw++)
            for (int64_t c = 0; c < C; c++)
                o[c] += s[dw * C + c];
        for (int64_t c = 0; c < C; c++)
            o[c] = o[c] / area;
    }
}

/* The shape of a fused scan + k x k pooling: pooled rows (b, ho) over the batch, each
 * covering k input rows (`row` contiguous elements per frame); a work item is a run of at
 * most `per_item` consecutive pooled rows. per_item is 0 if one row exceeds BLOCK. */
typedef struct {
    int64_t Ho, Wo, rows, row, step, per_item, channels_last;
    float area;
} pool_shape;

static pool_shape pooling(int64_t B, int64_t H, int64_t W, int64_t C, int64_t k,
                          int64_t channels_last)
{
    pool_shape g = {H / k, W / k, B * (H / k), k * W * C, B * H * W * C, 0, channels_last,
                    (float)(k * k)};
    g.per_item = BLOCK / g.row;
    return g;
}

/* Where pooled row q (over b, then ho) of step t starts in pooled frames [T*B][Ho][Wo][C]
 * (channels-last) or [T*B][C][Ho][Wo]; in the latter its channels are Ho * Wo apart. */
static inline int64_t pooled_at(const pool_shape *g, int64_t t, int64_t q, int64_t C)
{
    const int64_t B = g->rows / g->Ho, frame = t * B + q / g->Ho, ho = q % g->Ho;
    return g->channels_last ? (frame * g->Ho + ho) * g->Wo * C
                            : frame * C * g->Ho * g->Wo + ho * g->Wo;
}

static lif_params params(float beta, float slope, float threshold, float width)
{
    lif_params p = {beta, slope, threshold, width};
    return p;
}

/* currents [T][n] -> spikes [T][n], and the state bytes if state is not NULL; from and to
 * membrane [n] if it is not NULL. */
VECTOR_CLONES void lif_scan_forward(const float *currents, float *spikes, uint8_t *state,
                                    float *membrane, int64_t T, int64_t n, float beta,
                                    float slope, float threshold, float width)
{
    const lif_params p = params(beta, slope, threshold, width);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t block = 0; block < n; block += BLOCK) {
        const int64_t m = n - block < BLOCK ? n - block : BLOCK;
        float mem[BLOCK];
        start_row(mem, membrane ? membrane + block : NULL, m, p);
        for (int64_t t = 0; t < T; t++) {
            const int64_t at = t * n + block;
            step_row(mem, currents + at, spikes + at, state ? state + at : NULL, m, p);
        }
        if (membrane)
            memcpy(membrane + block, mem, sizeof(float) * m);
    }
}

/* d loss / d spikes [T][n] and state [T][n] -> d loss / d currents [T][n] (grad). */
VECTOR_CLONES void lif_scan_backward(const float *grad_spikes, const uint8_t *state, float *grad,
                                     int64_t T, int64_t n, float beta, float slope, float width)
{
    const lif_params p = params(beta, slope, 0.0f, width);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t block = 0; block < n; block += BLOCK) {
        const int64_t m = n - block < BLOCK ? n - block : BLOCK;
        for (int64_t t = T - 1; t >= 0; t--) {
            const int64_t at = t * n + block;
            backward_row(grad_spikes + at, state + at, t + 1 < T ? grad + at + n : NULL,
                         grad + at, m, p);
        }
    }
}

/* Fused scan + k x k average pooling. A pooled row (b, ho) covers k input rows, k * W * C
 * contiguous elements of each frame; a work item is a run of consecutive pooled rows (over
 * ho, then b) of at most BLOCK elements (pooling()). The pooled frames are channels-last
 * or, with channels_last 0, [T*B][C][Ho][Wo]. membrane, if not NULL, is [B][H][W][C].
 * Returns -1 (nothing done) if one pooled row's input exceeds BLOCK. */
VECTOR_CLONES int lif_pool_scan_forward(const float *currents, float *pooled, uint8_t *state,
                                        float *membrane, int64_t T, int64_t B, int64_t H,
                                        int64_t W, int64_t C, int64_t k, int64_t channels_last,
                                        float beta, float slope, float threshold, float width)
{
    const lif_params p = params(beta, slope, threshold, width);
    const pool_shape g = pooling(B, H, W, C, k, channels_last);
    const int64_t row = g.row, step = g.step, per_item = g.per_item, Wo = g.Wo;
    if (per_item == 0)
        return -1;
#pragma omp parallel for schedule(static) if (T * step >= PARALLEL_MIN)
    for (int64_t first = 0; first < g.rows; first += per_item) {
        const int64_t count = g.rows - first < per_item ? g.rows - first : per_item;
        float mem[BLOCK], spike[BLOCK], averages[BLOCK];
        start_row(mem, membrane ? membrane + first * row : NULL, count * row, p);
        for (int64_t t = 0; t < T; t++) {
            const int64_t at = t * step + first * row;
            step_row(mem, currents + at, spike, state ? state + at : NULL, count * row, p);
            for (int64_t r = 0; r < count; r++) {
                float *out = pooled + pooled_at(&g, t, first + r, C);
                if (channels_last) { /* the pooled row is [Wo][C] in place */
                    pool_row(spike + r * row, out, W, C, k, g.area);
                    continue;
                }
                pool_row(spike + r * row, averages, W, C, k, g.area);
                for (int64_t c = 0; c < C; c++)
                    for (int64_t wo = 0; wo < Wo; wo++)
                        out[c * g.Ho * Wo + wo] = averages[wo * C + c];
            }
        }
        if (membrane)
            memcpy(membrane + first * row, mem, sizeof(float) * count * row);
    }
    return 0;
}

/* d loss / d pooled (layout as the forward's) and state -> d loss / d currents
 * [T][B][H][W][C]. */
VECTOR_CLONES int lif_pool_scan_backward(const float *grad_pooled, const uint8_t *state,
                                         float *grad, int64_t T, int64_t B, int64_t H, int64_t W,
                                         int64_t C, int64_t k, int64_t channels_last, float beta,
                                         float slope, float width)
{
    const lif_params p = params(beta, slope, 0.0f, width);
    const pool_shape g = pooling(B, H, W, C, k, channels_last);
    const int64_t row = g.row, step = g.step, per_item = g.per_item, Wo = g.Wo;
    if (per_item == 0)
        return -1;
#pragma omp parallel for schedule(static) if (T * step >= PARALLEL_MIN)
    for (int64_t first = 0; first < g.rows; first += per_item) {
        const int64_t count = g.rows - first < per_item ? g.rows - first : per_item;
        float grad_spike[BLOCK];
        for (int64_t t = T - 1; t >= 0; t--) {
            for (int64_t r = 0; r < count; r++) {
                const float *in = grad_pooled + pooled_at(&g, t, first + r, C);
                float unit[BLOCK]; /* d loss / d spikes of one pooled output: g / k^2 */
                if (channels_last)
                    for (int64_t j = 0; j < Wo * C; j++)
                        unit[j] = in[j] / g.area;
                else
                    for (int64_t wo = 0; wo < Wo; wo++)
                        for (int64_t c = 0; c < C; c++)
                            unit[wo * C + c] = in[c * g.Ho * Wo + wo] / g.area;
                float *to = grad_spike + r * row; /* un-pooled: k x k copies */
                for (int64_t dh = 0; dh < k; dh++)
                    for (int64_t wo = 0; wo < Wo; wo++)
                        for (int64_t dw = 0; dw < k; dw++, to += C)
                            memcpy(to, unit + wo * C, sizeof(float) * C);
            }
            const int64_t at = t * step + first * row;
            backward_row(grad_spike, state + at, t + 1 < T ? grad + at + step : NULL, grad + at,
                         count * row, p);
        }
    }
    return 0;
}
