// Small math helpers written so that GCC/Clang vectorise the loops that call them
// (`#pragma omp simd`): only arithmetic, compares and bit casts, no libm calls.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace dlsys {

// exp(x) for float, |relative error| < 2e-7 on [-87.3, 88] (about 1-2 ulp); 0 below -87.3
// (where the true value is a float denormal or 0), exp(88) above 88, NaN for NaN.
// exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2], and exp(r)
// by its Taylor polynomial of degree 7 (truncation error 0.347^8 / 8! = 5e-9).
#pragma omp declare simd notinbranch
inline float vexp(float x) {
  const float lo = -87.3f, hi = 88.0f;
  const float xc = x > hi ? hi : x;  // NaN stays NaN (the compare is false)
  // round-to-nearest by the 1.5 * 2^23 trick (valid for |x / ln 2| < 2^22)
  const float kf = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - kf * 0.693145751953125f) - kf * 1.42860682030941723e-06f;
  float p = 1.0f / 5040.0f + r * (1.0f / 40320.0f);
  p = 1.0f / 720.0f + r * p;
  p = 1.0f / 120.0f + r * p;
  p = 1.0f / 24.0f + r * p;
  p = 1.0f / 6.0f + r * p;
  p = 0.5f + r * p;
  p = 1.0f + r * p;
  p = 1.0f + r * p;
  const int32_t k = static_cast<int32_t>(kf);
  const int32_t bits = (k + 127) << 23;  // 2^k as a float, k in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < lo ? 0.0f : p * scale;
}

// double: libm's exp (accuracy first; float32 is the fast path).
inline double vexp(double x) { return std::exp(x); }

// log(x) for float, |absolute error| < 2e-7 for normal x > 0; -inf at 0, NaN for x < 0 or
// NaN, inf at inf (denormal x is not handled: callers pass sums of exp that are >= 1).
// x = 2^e * m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(z), z = (m - 1) / (m + 1),
// |z| <= 0.1716, by its odd series to z^9 (next term 2 z^11 / 11 = 3e-10).
#pragma omp declare simd notinbranch
inline float vlog(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int32_t e = ((bits >> 23) & 0xff) - 127;
  int32_t mbits = (bits & 0x007fffff) | 0x3f800000;  // m in [1, 2)
  float m;
  std::memcpy(&m, &mbits, sizeof m);
  const bool big = m > 1.41421356237f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float z = (m - 1.0f) / (m + 1.0f);
  const float z2 = z * z;
  float p = 1.0f / 9.0f;
  p = 1.0f / 7.0f + z2 * p;
  p = 1.0f / 5.0f + z2 * p;
  p = 1.0f / 3.0f + z2 * p;
  p = 1.0f + z2 * p;
  float r = static_cast<float>(e) * 0.693147180559945f + 2.0f * z * p;
  r = x == 0.0f ? -INFINITY : r;
  r = x == INFINITY ? INFINITY : r;
  r = (x < 0.0f || x != x) ? NAN : r;
  return r;
}

inline double vlog(double x) { return std::log(x); }

}  // namespace dlsys
