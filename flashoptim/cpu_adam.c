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
    uint32_t u = f32_bits(f);
    const uint16_t r = (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    return isnan(f) ? 0x7FC0 : r;
}

/* ULP(p) of a bf16 p as an fp32 power of two (the exponent field clamped to the normal range), times k */
static inline float ulp_times(uint16_t p, float k) {
    uint32_t e = p & 0x7F80;
    e = e < 128 ? 128 : e;
    e = e > 0x7F80 - 128 ? 0x7F80 - 128 : e;
    return bits_f32(e << 16) * k;
}

static inline float f16_f32(uint16_t h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline uint16_t f32_f16(float f) { _Float16 x = (_Float16)f; uint16_t h; memcpy(&h, &x, 2); return h; }

static inline float clampf(float x, float lo, float hi) {
    /* torch.clamp: NaN propagates (x < lo and x > hi are false for NaN) */
    return x < lo ? lo : (x > hi ? hi : x);
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
    float decay;      /* 1 - lr * wd (1 when wd == 0: x * 1 is x) */
    float w1, beta2, c2, bc2, eps, step_size; /* 1-b1, b2, 1-b2, sqrt(1-b2^t), eps, -lr/(1-b1^t) */
    float k_rec;      /* 2^-7 * 0.5 / Q: reconstruction constant */
} adam_args;

/* torch's sqrt on CPU is MKL's vmsSqrt (not always the correctly rounded square root): the caller
 * passes it in, and every square root here goes through it, so the bits are torch's */
typedef void (*vsqrt_fn)(int n, const float *in, float *out, int64_t mode);
#define VML_MODE (0x2 | 0x140000 | 0x100) /* VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE, as ATen's vml.h */
#define BLOCK 1024 /* values per pass of the three phases: 32 groups, the buffers stay in L1/L2 */

/* One block of phase 1 and 2 with the layout as compile-time constants (always inlined into one
 * copy per layout below), so that the loops have no branches and vectorise. */
static inline __attribute__((always_inline)) void phases12(const adam_args *a, vsqrt_fn vsqrt, int64_t b0, int blen,
    void *param, const void *grad, void *corr, const int8_t *m_codes, const uint16_t *m_scales,
    const uint8_t *v_codes, const uint16_t *v_scales, float *master, float *mbuf, float *vbuf, float *sbuf,
    const int PB, const int CORR, const int MS, const int VS) {
    const float q_corr = CORR == 2 ? 32767.0f : 127.0f;
    const int small = a->w1 < 0.5f;
    const float wc = small ? a->w1 : a->w1 - 1.0f;
    const float ma = a->m_a, ma1 = 1.0f + a->m_a;
    for (int g0 = 0; g0 < blen; g0 += GROUP) {
        const int64_t gi = (b0 + g0) / GROUP;
        const int len = blen - g0 < GROUP ? blen - g0 : GROUP;
        const float m_eff = f16_f32(m_scales[gi]);
        const float ve = f16_f32(v_scales[gi]);
        const float v_eff = ve * ve;
        for (int j = g0; j < g0 + len; j++) {
            const int64_t i = b0 + j;
            float x, g;
            if (PB) {
                const uint16_t p = ((const uint16_t *)param)[i];
                const float pf = bf16_f32(p);
                if (CORR == 1) x = (float)((const int8_t *)corr)[i] * ulp_times(p, a->k_rec) + pf;
                else if (CORR == 2) x = (float)((const int16_t *)corr)[i] * ulp_times(p, a->k_rec) + pf;
                else x = pf;
                g = bf16_f32(((const uint16_t *)grad)[i]);
            } else {
                x = ((const float *)param)[i];
                g = ((const float *)grad)[i];
            }
            float zm = (float)m_codes[i] / 127.0f;
            if (MS) zm = zm / (fabsf(zm) * -ma + ma1);
            float m = zm * m_eff;
            float zv = (float)v_codes[i] / 255.0f;
            if (VS) zv = zv * zv;
            float v = zv * v_eff;
            x = x * a->decay; /* 1 when weight decay is 0: x * 1 is x */
            /* lerp as torch's vectorised kernel: fmadd(w, end - self, self) for |w| < 0.5, else
             * fmadd(w - 1, end - self, end) */
            m = fmaf(wc, g - m, small ? m : g);
            v = v * a->beta2;
            v = fmaf(a->c2 * g, g, v); /* addcmul: torch's AVX2 kernel contracts value * t1 * t2 + self */
            master[j] = x;
            mbuf[j] = m;
            vbuf[j] = v;
        }
    }
    vsqrt(blen, vbuf, sbuf, VML_MODE);
    for (int j = 0; j < blen; j++) {
        const int64_t i = b0 + j;
        const float denom = sbuf[j] / a->bc2 + a->eps;
        const float x = master[j] + a->step_size * mbuf[j] / denom;
        if (PB) {
            const uint16_t p = f32_bf16(x);
            ((uint16_t *)param)[i] = p;
            if (CORR) {
                float code = (-bf16_f32(p) + x) / ulp_times(p, 0.5f / 128.0f);
                code = clampf(rintf(code * q_corr), -q_corr, q_corr);
                code = isnan(code) ? 0.0f : code;
                if (CORR == 1) ((int8_t *)corr)[i] = (int8_t)code;
                else ((int16_t *)corr)[i] = (int16_t)code;
            }
        } else {
            ((float *)param)[i] = x;
        }
    }
}

#define PHASES(PB, CORR, MS, VS) \
    phases12(a, vsqrt, b0, blen, param, grad, corr, m_codes, m_scales, v_codes, v_scales, master, mbuf, vbuf, sbuf, PB, CORR, MS, VS)

void flash_adamw_step(const adam_args *a, vsqrt_fn vsqrt, void *param, const void *grad, void *corr,
                      int8_t *m_codes, uint16_t *m_scales, uint8_t *v_codes, uint16_t *v_scales) {
    const int64_t n = a->n;
    float master[BLOCK], mbuf[BLOCK], vbuf[BLOCK], sbuf[BLOCK], gam[BLOCK / GROUP], gsq[BLOCK / GROUP];
    /* the companders come in pairs (cpu_fused.supported): paper = softsign and sqrt, or both linear */
    const int layout = (a->param_bf16 ? 1 + a->corr : 0) * 2 + a->m_softsign;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        const int blen = (int)(n - b0 < BLOCK ? n - b0 : BLOCK);
        const int ngr = (blen + GROUP - 1) / GROUP;
        switch (layout) { /* phase 1: reconstruct, decode, update the moments; 2: step, split */
        case 0: PHASES(0, 0, 0, 0); break;
        case 1: PHASES(0, 0, 1, 1); break;
        case 2: PHASES(1, 0, 0, 0); break;
        case 3: PHASES(1, 0, 1, 1); break;
        case 4: PHASES(1, 1, 0, 0); break;
        case 5: PHASES(1, 1, 1, 1); break;
        case 6: PHASES(1, 2, 0, 0); break;
        default: PHASES(1, 2, 1, 1); break;
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
