/* Per-column affine quantisers in one pass (prime.kernels.quantise): the converters and
 * fixed-point words of prime.hardware.periphery. Element i belongs to column i % period
 * (columns innermost in memory, e.g. channels-last frames).
 *
 * forward:  code = x * mul[j] + add[j]; in = low <= code <= high; code = rint(clamp(code));
 *           y = code * out_mul[j] + out_add[j]; then, if word_scale > 0, the fixed-point word
 *           w = rint(clamp(y * word_scale, word_low, word_high)) / word_scale (in &= unsaturated)
 * backward: grad_x = in ? grad * slope[j] : 0
 * rint rounds half to even under the default rounding mode, as torch.round does.
 */
#include <math.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define PARALLEL_MIN 65536

VECTOR_CLONES
void quantise_columns_forward(const float *restrict x, float *restrict y, uint8_t *restrict in,
                              int64_t n, int64_t period, const float *restrict mul,
                              const float *restrict add, const float *restrict out_mul,
                              const float *restrict out_add, float low, float high,
                              float word_scale, float word_low, float word_high)
{
    int64_t rows = n / period;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * period;
        float *yr = y + r * period;
        uint8_t *ir = in + r * period;
        for (int64_t j = 0; j < period; j++) {
            float code = xr[j] * mul[j];
            code = code + add[j];
            uint8_t inside = (code >= low) & (code <= high);
            code = code < low ? low : (code > high ? high : code);
            float value = rintf(code) * out_mul[j];
            value = value + out_add[j];
            if (word_scale > 0) {
                float word = value * word_scale;
                inside &= (word >= word_low) & (word <= word_high);
                word = word < word_low ? word_low : (word > word_high ? word_high : word);
                value = rintf(word) / word_scale;
            }
            yr[j] = value;
            ir[j] = inside;
        }
    }
}

VECTOR_CLONES
void quantise_columns_backward(const float *restrict grad, const uint8_t *restrict in,
                               float *restrict out, int64_t n, int64_t period,
                               const float *restrict slope)
{
    int64_t rows = n / period;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < period; j++) {
            int64_t i = r * period + j;
            out[i] = in[i] ? grad[i] * slope[j] : 0.0f;
        }
}
