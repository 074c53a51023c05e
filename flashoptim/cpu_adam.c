/* The FlashAdamW CPU step of one contiguous parameter in one pass (flashoptim/cpu_fused.py builds and loads it).
 *
 * Each value goes through the operations of the torch reference path (FlashOptimizer._reference_step
 * with FlashAdamW._reference_update), in the same order and with the same fp32 roundings:
 * reconstruct the master from the 16-bit param and its correction, decode both moments from their
 * 8-bit codes and fp16 group scales, update, split the master back, encode the moments again.  A
 * quantisation group of 32 consecutive values is the unit of work (its scale needs all 32 updated
 * values), and square roots go through torch's own (MKL's vmsSqrt, which is not always the
 * correctly rounded root), so values pass in blocks of 1024 through three phases with a call of
 * it between them.  Compiled with -ffp-contract=off: a product is never fused into a following sum
 * unless written as fmaf(), which is where torch's AVX2 kernels fuse (lerp, addcmul).
 * tests/flashoptim/test_cpu_step.py checks every bit against the per-parameter torch reference.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define GROUP 32

static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bf16_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* round to nearest even, as c10::BFloat16 (NaN -> the canonical quiet NaN) */
static inline uint16_t f32_bf16(float f) {
    if (isnan(f)) return 0x7FC0;
    uint32_t u = f32_bits(f);
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ULP(p) of a bf16 p as an fp32 power of two (the exponent field clamped to the normal range), times k */
static inline float ulp_times(uint16_t p, float k) {
    uint32_t e = p & 0x7F80;
    if (e < 128) e = 128;
    if (e > 0x7F80 - 128) e = 0x7F80 - 128;
    return bits_f32(e << 16) * k;
}

static inline float f16_f32(uint16_t h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t f32_f16(float f) { _Float16 x = (_Float16)f; uint16_t h; memcpy(&h, &x, 2); return h; }

static inline float clampf(float x, float lo, float hi) {
    /* torch.clamp: NaN propagates */
    return isnan(x) ? x : (x < lo ? lo : (x > hi ? hi : x));
}

/* group absmax as the quantiser takes it: |max(max x, -min x)|, NaN propagating */
static float absmax(const float *x, int n) {
    float hi = x[0], lo = x[0];
    int nan = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i])) nan = 1;
        if (x[i] > hi) hi = x[i];
        if (x[i] < lo) lo = x[i];
    }
    if (n < GROUP) { /* the reference pads a short group with zeros */
        if (hi < 0.0f) hi = 0.0f;
        if (lo > 0.0f) lo = 0.0f;
    }
    if (nan) return NAN;
    float a = hi > -lo ? hi : -lo;
    return fabsf(a);
}

typedef struct {
    int64_t n;
    int param_bf16;   /* 1: bf16 param with fp32 master (reconstructed), 0: fp32 param is its own master */
    int corr;         /* 0: no correction, 1: int8 (Q = 127), 2: int16 (Q = 32767) */
    int m_softsign;   /* first moment compander: 1 softsign(m_a), 0 linear */
    float m_a;
    int v_sqrt;       /* second moment compander: 1 power(0.5), 0 linear */
    float decay;      /* 1 - lr * wd (not applied when wd == 0: has_decay 0) */
    int has_decay;
    float w1, beta2, c2, bc2, eps, step_size; /* 1-b1, b2, 1-b2, sqrt(1-b2^t), eps, -lr/(1-b1^t) */
    float k_rec;      /* 2^-7 * 0.5 / Q: reconstruction constant */
} adam_args;

/* torch's sqrt on CPU is MKL's vmsSqrt (not always the correctly rounded square root): the caller
 * passes it in, and every square root here goes through it, so the bits are torch's */
typedef void (*vsqrt_fn)(int n, const float *in, float *out, int64_t mode);
#define VML_MODE (0x2 | 0x140000 | 0x100) /* VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE, as ATen's vml.h */
#define BLOCK 1024 /* values per pass of the three phases: 32 groups, the buffers stay in L1/L2 */

void flash_adamw_step(const adam_args *a, vsqrt_fn vsqrt, void *param, const void *grad, void *corr,
                      int8_t *m_codes, uint16_t *m_scales, uint8_t *v_codes, uint16_t *v_scales) {
    const int64_t n = a->n;
    const float q_corr = a->corr == 2 ? 32767.0f : 127.0f;
    float master[BLOCK], mbuf[BLOCK], vbuf[BLOCK], sbuf[BLOCK], gam[BLOCK / GROUP], gsq[BLOCK / GROUP];
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        const int blen = (int)(n - b0 < BLOCK ? n - b0 : BLOCK);
        const int ngr = (blen + GROUP - 1) / GROUP;
        /* phase 1: reconstruct, decode, decay, first and second moment */
        for (int j = 0; j < blen; j++) {
            const int64_t i = b0 + j;
            const int64_t gi = i / GROUP;
            float x, g;
            if (a->param_bf16) {
                const uint16_t p = ((const uint16_t *)param)[i];
                const float pf = bf16_f32(p);
                if (a->corr == 1) x = (float)((const int8_t *)corr)[i] * ulp_times(p, a->k_rec) + pf;
                else if (a->corr == 2) x = (float)((const int16_t *)corr)[i] * ulp_times(p, a->k_rec) + pf;
                else x = pf;
                g = bf16_f32(((const uint16_t *)grad)[i]);
            } else {
                x = ((const float *)param)[i];
                g = ((const float *)grad)[i];
            }
            float zm = (float)m_codes[i] / 127.0f;
            if (a->m_softsign) zm = zm / (fabsf(zm) * -a->m_a + (1.0f + a->m_a));
            float m = zm * f16_f32(m_scales[gi]);
            float zv = (float)v_codes[i] / 255.0f;
            if (a->v_sqrt) zv = zv * zv;
            float ve = f16_f32(v_scales[gi]);
            float v = zv * (ve * ve);
            if (a->has_decay) x = x * a->decay;
            /* lerp as torch's vectorised kernel: fmadd(w, end - self, self) for |w| < 0.5, else
             * fmadd(w - 1, end - self, end) */
            m = a->w1 < 0.5f ? fmaf(a->w1, g - m, m) : fmaf(a->w1 - 1.0f, g - m, g);
            v = v * a->beta2;
            v = fmaf(a->c2 * g, g, v); /* addcmul: torch's AVX2 kernel contracts value * t1 * t2 + self */
            master[j] = x;
            mbuf[j] = m;
            vbuf[j] = v;
        }
        vsqrt(blen, vbuf, sbuf, VML_MODE);
        /* phase 2: the step, the split, the group maxima */
        for (int j = 0; j < blen; j++) {
            const int64_t i = b0 + j;
            const float denom = sbuf[j] / a->bc2 + a->eps;
            const float x = master[j] + a->step_size * mbuf[j] / denom;
            if (a->param_bf16) {
                const uint16_t p = f32_bf16(x);
                ((uint16_t *)param)[i] = p;
                if (a->corr) {
                    float code = (-bf16_f32(p) + x) / ulp_times(p, 0.5f / 128.0f);
                    code = clampf(rintf(code * q_corr), -q_corr, q_corr);
                    if (isnan(code)) code = 0.0f;
                    if (a->corr == 1) ((int8_t *)corr)[i] = (int8_t)code;
                    else ((int16_t *)corr)[i] = (int16_t)code;
                }
            } else {
                ((float *)param)[i] = x;
            }
        }
        for (int k = 0; k < ngr; k++) {
            const int len = blen - k * GROUP < GROUP ? blen - k * GROUP : GROUP;
            gam[k] = absmax(mbuf + k * GROUP, len);
            gsq[k] = absmax(vbuf + k * GROUP, len);
        }
        vsqrt(ngr, gsq, gsq, VML_MODE); /* the second moment's scale stores sqrt(absmax) */
        /* phase 3: encode; the second moment's compander (power 0.5) is a square root again */
        for (int k = 0; k < ngr; k++) {
            const int64_t gi = b0 / GROUP + k;
            const int len = blen - k * GROUP < GROUP ? blen - k * GROUP : GROUP;
            uint16_t s = f32_f16(gam[k]);
            if (gam[k] > 0.0f && (s & 0x7FFF) == 0) s = 0x0001; /* the smallest fp16 subnormal */
            m_scales[gi] = s;
            float eff = f16_f32(s);
            float safe = eff > 0.0f ? eff : 1.0f;
            for (int j = k * GROUP; j < k * GROUP + len; j++) {
                float y = clampf(mbuf[j] / safe, -1.0f, 1.0f);
                if (a->m_softsign) {
                    const float den = fabsf(y) * a->m_a + 1.0f;
                    y = y * (1.0f + a->m_a) / den;
                }
                m_codes[b0 + j] = (int8_t)rintf(y * 127.0f);
            }
            /* absmax > 0 exactly when its square root is (gsq holds the root now) */
            s = f32_f16(gsq[k]);
            if (gsq[k] > 0.0f && (s & 0x7FFF) == 0) s = 0x0001;
            v_scales[gi] = s;
            eff = f16_f32(s);
            eff = eff * eff;
            safe = eff > 0.0f ? eff : 1.0f;
            for (int j = k * GROUP; j < k * GROUP + len; j++) sbuf[j] = clampf(vbuf[j] / safe, 0.0f, 1.0f);
        }
        if (a->v_sqrt) vsqrt(blen, sbuf, sbuf, VML_MODE);
        for (int j = 0; j < blen; j++) {
            const float x = vbuf[j];
            float q = rintf(sbuf[j] * 255.0f);
            const float sg = x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (isnan(x) ? x : 0.0f));
            q = isnan(q) || isnan(sg) ? NAN : (q > sg ? q : sg);
            v_codes[b0 + j] = (uint8_t)q;
        }
    }
}
