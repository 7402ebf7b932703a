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
 * Work is split over OpenMP threads: PyTorch's own pool where PyTorch uses libgomp.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

enum { FIRED = 1, IN_WINDOW = 2, POSITIVE = 4, BLOCK = 2048, MAX_ROW = 1 << 14 };

/* below this many elements per step, one thread */
#define PARALLEL_MIN 65536

typedef struct {
    float keep, slope, threshold, width;
} lif_params;

/* One step of m neurons: membranes mem (0 where reset) and currents -> spikes (0/1), and the
 * state bytes if bits is not NULL. Branch-free, so the compiler vectorizes it. */
static inline void step_row(float *restrict mem, const float *restrict current,
                            float *restrict spike, uint8_t *restrict bits, int64_t m,
                            lif_params p)
{
    if (!bits) {
        for (int64_t i = 0; i < m; i++) {
            float u = mem[i] * p.keep + current[i];
            u = u > 0.0f ? u : u * p.slope;
            spike[i] = u > p.threshold ? 1.0f : 0.0f;
            mem[i] = u > p.threshold ? 0.0f : u; /* reset to 0 where the neuron fired */
        }
        return;
    }
    for (int64_t i = 0; i < m; i++) {
        float u = mem[i] * p.keep + current[i];
        u = u > 0.0f ? u : u * p.slope;
        const int fired = u > p.threshold;
        spike[i] = fired ? 1.0f : 0.0f;
        bits[i] = (uint8_t)(fired | (fabsf(u - p.threshold) < p.width) << 1 | (u > 0.0f) << 2);
        mem[i] = fired ? 0.0f : u;
    }
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
        g = g + later[i] * p.keep * ((bits[i] & FIRED) ? 0.0f : 1.0f);
        out[i] = (bits[i] & POSITIVE) ? g : g * p.slope;
    }
}

static lif_params params(float keep, float slope, float threshold, float width)
{
    lif_params p = {keep, slope, threshold, width};
    return p;
}

/* currents [T][n] -> spikes [T][n], and the state bytes if state is not NULL. */
void lif_scan_forward(const float *currents, float *spikes, uint8_t *state, int64_t T,
                      int64_t n, float keep, float slope, float threshold, float width)
{
    const lif_params p = params(keep, slope, threshold, width);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t block = 0; block < n; block += BLOCK) {
        const int64_t m = n - block < BLOCK ? n - block : BLOCK;
        float mem[BLOCK] = {0};
        for (int64_t t = 0; t < T; t++) {
            const int64_t at = t * n + block;
            step_row(mem, currents + at, spikes + at, state ? state + at : NULL, m, p);
        }
    }
}

/* d loss / d spikes [T][n] and state [T][n] -> d loss / d currents [T][n] (grad). */
void lif_scan_backward(const float *grad_spikes, const uint8_t *state, float *grad, int64_t T,
                       int64_t n, float keep, float slope, float width)
{
    const lif_params p = params(keep, slope, 0.0f, width);
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

/* Fused scan + k x k average pooling. A work item is one pooled row (b, ho): the k input
 * rows it covers are k * W * C contiguous elements of every frame. Returns -1 (nothing done)
 * if such a row is longer than MAX_ROW. */
int lif_pool_scan_forward(const float *currents, float *pooled, uint8_t *state, int64_t T,
                          int64_t B, int64_t H, int64_t W, int64_t C, int64_t k, float keep,
                          float slope, float threshold, float width)
{
    const lif_params p = params(keep, slope, threshold, width);
    const int64_t Ho = H / k, Wo = W / k, row = k * W * C, frame = H * W * C;
    const float area = (float)(k * k);
    if (row > MAX_ROW)
        return -1;
#pragma omp parallel for schedule(static) if (T * B * frame >= PARALLEL_MIN)
    for (int64_t item = 0; item < B * Ho; item++) {
        const int64_t b = item / Ho, ho = item % Ho;
        float mem[MAX_ROW], spike[MAX_ROW];
        for (int64_t i = 0; i < row; i++)
            mem[i] = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            const int64_t at = (t * B + b) * frame + ho * row;
            step_row(mem, currents + at, spike, state ? state + at : NULL, row, p);
            float *out = pooled + ((t * B + b) * Ho + ho) * Wo * C;
            for (int64_t wo = 0; wo < Wo; wo++)
                for (int64_t c = 0; c < C; c++) {
                    float sum = 0.0f; /* spike counts: exact in any order */
                    for (int64_t dh = 0; dh < k; dh++)
                        for (int64_t dw = 0; dw < k; dw++)
                            sum += spike[(dh * W + wo * k + dw) * C + c];
                    out[wo * C + c] = sum / area;
                }
        }
    }
    return 0;
}

/* d loss / d pooled [T][B][H/k][W/k][C] and state -> d loss / d currents [T][B][H][W][C]. */
int lif_pool_scan_backward(const float *grad_pooled, const uint8_t *state, float *grad,
                           int64_t T, int64_t B, int64_t H, int64_t W, int64_t C, int64_t k,
                           float keep, float slope, float width)
{
    const lif_params p = params(keep, slope, 0.0f, width);
    const int64_t Ho = H / k, Wo = W / k, row = k * W * C, frame = H * W * C;
    const float area = (float)(k * k);
    if (row > MAX_ROW)
        return -1;
#pragma omp parallel for schedule(static) if (T * B * frame >= PARALLEL_MIN)
    for (int64_t item = 0; item < B * Ho; item++) {
        const int64_t b = item / Ho, ho = item % Ho;
        float grad_spike[MAX_ROW];
        for (int64_t t = T - 1; t >= 0; t--) {
            const float *g = grad_pooled + ((t * B + b) * Ho + ho) * Wo * C;
            for (int64_t dh = 0; dh < k; dh++) /* average pooling's gradient: g / k^2 */
                for (int64_t w = 0; w < W; w++)
                    for (int64_t c = 0; c < C; c++)
                        grad_spike[(dh * W + w) * C + c] = g[(w / k) * C + c] / area;
            const int64_t at = (t * B + b) * frame + ho * row;
            const int64_t next = at + B * frame;
            backward_row(grad_spike, state + at, t + 1 < T ? grad + next : NULL, grad + at,
                         row, p);
        }
    }
    return 0;
}
