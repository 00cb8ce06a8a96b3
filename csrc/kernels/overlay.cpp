#include "kernels/overlay.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "kernels/parallel.hpp"
#include "kernels/resize.hpp"

namespace onnxlens {
namespace {

// out = floor((1 - a) * img + a * colour + 0.5) for every (colour index, channel, image value):
// 256 * 3 * 256 bytes, built once per call. Per pixel the blend is then one byte load per channel
// instead of float converts, and stays exact. Neighbouring pixels have nearly the same colour
// index and image value, so the lookups hit L1.
struct BlendTable {
  std::vector<std::uint8_t> t;  // [(idx * 3 + c) * 256 + v]
  BlendTable(const Rgb* table, float alpha) : t(256 * 3 * 256) {
    float img[256];
    for (int v = 0; v < 256; ++v) img[v] = (1.f - alpha) * static_cast<float>(v);
    for (int i = 0; i < 256; ++i)
      for (int c = 0; c < 3; ++c) {
        const float col = alpha * static_cast<float>(table[i][c]) + 0.5f;
        std::uint8_t* row = t.data() + (i * 3 + c) * 256;
        for (int v = 0; v < 256; ++v) row[v] = static_cast<std::uint8_t>(img[v] + col);
      }
  }
};

// Copies the (h, w) map replacing non-finite values by the finite minimum.
// Returns false when no value is finite (the map is then all zeros).
bool clean_map(const float* src, std::int64_t count, float* dst) {
  float mn = std::numeric_limits<float>::infinity();
  bool any_bad = false;
  for (std::int64_t i = 0; i < count; ++i) {
    const float v = src[i];
    if (std::isfinite(v)) {
      mn = std::min(mn, v);
    } else {
      any_bad = true;
    }
  }
  const bool any_finite = std::isfinite(mn);
  if (!any_finite) mn = 0.f;
  if (!any_bad) {
    std::copy(src, src + count, dst);
  } else {
    for (std::int64_t i = 0; i < count; ++i) dst[i] = std::isfinite(src[i]) ? src[i] : mn;
  }
  return any_finite;
}

void min_max(const float* v, std::int64_t count, float& mn, float& mx) {
  std::int64_t i = 0;
  float lo = v[0], hi = v[0];
#if defined(__SSE2__)
  // GCC will not vectorise a float min/max reduction without -ffast-math; v has no NaN here.
  if (count >= 4) {
    __m128 vlo = _mm_loadu_ps(v), vhi = vlo;
    for (i = 4; i + 4 <= count; i += 4) {
      const __m128 x = _mm_loadu_ps(v + i);
      vlo = _mm_min_ps(vlo, x);
      vhi = _mm_max_ps(vhi, x);
    }
    alignas(16) float l[4], h[4];
    _mm_store_ps(l, vlo);
    _mm_store_ps(h, vhi);
    lo = std::min(std::min(l[0], l[1]), std::min(l[2], l[3]));
    hi = std::max(std::max(h[0], h[1]), std::max(h[2], h[3]));
  }
#endif
  for (; i < count; ++i) {
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  mn = lo;
  mx = hi;
}

void blend_rows(const std::uint8_t* img, const float* up, float mn, float scale,
                const BlendTable& lut, std::uint8_t* out, std::int64_t W, std::int64_t row_begin,
                std::int64_t row_end) {
  std::vector<std::int32_t> idx(W);
  const std::uint8_t* t = lut.t.data();
  for (std::int64_t y = row_begin; y < row_end; ++y) {
    const float* u = up + y * W;
    const std::uint8_t* p = img + 3 * y * W;
    std::uint8_t* o = out + 3 * y * W;
    std::int64_t x0 = 0;
#if defined(__SSE2__)
    {
      const __m128 vmn = _mm_set1_ps(mn), vs = _mm_set1_ps(scale), half = _mm_set1_ps(0.5f);
      const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps(255.f);
      for (; x0 + 4 <= W; x0 += 4) {
        __m128 v = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(u + x0), vmn), vs), half);
        v = _mm_min_ps(_mm_max_ps(v, zero), top);
        const __m128i i = _mm_cvttps_epi32(v);
        const __m128i i768 = _mm_add_epi32(_mm_slli_epi32(i, 9), _mm_slli_epi32(i, 8));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(idx.data() + x0), i768);
      }
    }
#endif
    for (std::int64_t x = x0; x < W; ++x) {
      float v = (u[x] - mn) * scale + 0.5f;
      // Clamp guards float overshoot only (u is a convex combination of values in [mn, mx]).
      v = v < 0.f ? 0.f : v;
      v = v > 255.f ? 255.f : v;
      idx[x] = static_cast<std::int32_t>(v) * (3 * 256);
    }
    std::int64_t x = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    // Four pixels (12 bytes) per step: two loads and two stores instead of twelve of each, the
    // load/store ports being what limits this loop.
    for (; x + 4 <= W; x += 4) {
      std::uint64_t a;
      std::uint32_t b;
      std::memcpy(&a, p + 3 * x, 8);
      std::memcpy(&b, p + 3 * x + 8, 4);
      const std::uint8_t* c0 = t + idx[x];
      const std::uint8_t* c1 = t + idx[x + 1];
      const std::uint8_t* c2 = t + idx[x + 2];
      const std::uint8_t* c3 = t + idx[x + 3];
      auto byte = [](std::uint64_t v, int i) { return static_cast<unsigned>((v >> (8 * i)) & 255u); };
      const std::uint64_t lo = std::uint64_t{c0[byte(a, 0)]} | std::uint64_t{c0[256 + byte(a, 1)]} << 8 |
                               std::uint64_t{c0[512 + byte(a, 2)]} << 16 | std::uint64_t{c1[byte(a, 3)]} << 24 |
                               std::uint64_t{c1[256 + byte(a, 4)]} << 32 | std::uint64_t{c1[512 + byte(a, 5)]} << 40 |
                               std::uint64_t{c2[byte(a, 6)]} << 48 | std::uint64_t{c2[256 + byte(a, 7)]} << 56;
      const std::uint32_t hi = std::uint32_t{c2[512 + byte(b, 0)]} | std::uint32_t{c3[byte(b, 1)]} << 8 |
                               std::uint32_t{c3[256 + byte(b, 2)]} << 16 | std::uint32_t{c3[512 + byte(b, 3)]} << 24;
      std::memcpy(o + 3 * x, &lo, 8);  // after both loads: in-place (out == images) stays correct
      std::memcpy(o + 3 * x + 8, &hi, 4);
    }
#endif
    for (; x < W; ++x) {
      const std::uint8_t* c = t + idx[x];
      o[3 * x + 0] = c[p[3 * x + 0]];
      o[3 * x + 1] = c[256 + p[3 * x + 1]];
      o[3 * x + 2] = c[512 + p[3 * x + 2]];
    }
  }
}

float norm_scale(float mn, float mx) {
  const float range = mx - mn;
  // A constant map (range 0) maps to index 0 everywhere, never 0/0.
  if (!(range > 0.f) || !std::isfinite(range)) return 0.f;
  return 255.f / range;
}

}  // namespace

void overlay(const std::uint8_t* images, const float* maps, std::int64_t n, std::int64_t h,
             std::int64_t w, std::int64_t H, std::int64_t W, const Rgb* table, float alpha,
             std::uint8_t* out) {
  if (!(alpha >= 0.f && alpha <= 1.f)) throw std::invalid_argument("alpha must be in [0, 1]");
  if (n == 0 || H == 0 || W == 0) return;
  const LinearTable xt = make_linear_table(w, W);
  const LinearTable yt = make_linear_table(h, H);
  const BlendTable lut(table, alpha);

  const std::int64_t hw = h * w, HW = H * W;
  if (n >= max_threads()) {
    // One map per task; the (H, W) float buffer stays in L2 between the resize and the blend.
    parallel_for(n, true, [&](std::int64_t i) {
      thread_local std::vector<float> small, rows, up;
      small.resize(hw);
      rows.resize(h * W);
      up.resize(HW);
      clean_map(maps + i * hw, hw, small.data());
      resize_map_rows(small.data(), h, w, xt, yt, rows.data(), false, up.data(), W, 0, H);
      float mn, mx;
      min_max(up.data(), HW, mn, mx);
      blend_rows(images + 3 * i * HW, up.data(), mn, norm_scale(mn, mx), lut, out + 3 * i * HW, W,
                 0, H);
    });
    return;
  }
  // Few maps: split each map's rows across threads instead.
  std::vector<float> small(hw), rows(h * W), up(HW);
  for (std::int64_t i = 0; i < n; ++i) {
    clean_map(maps + i * hw, hw, small.data());
    resize_rows_horizontal(small.data(), h, w, xt, rows.data(), W);
    const std::int64_t chunks = std::max<std::int64_t>(1, std::min<std::int64_t>(H, max_threads()));
    std::vector<float> lo(chunks), hi(chunks);
    parallel_for(chunks, true, [&](std::int64_t c) {
      const std::int64_t b = H * c / chunks, e = H * (c + 1) / chunks;
      resize_map_rows(small.data(), h, w, xt, yt, rows.data(), true, up.data(), W, b, e);
      if (b < e) {
        min_max(up.data() + b * W, (e - b) * W, lo[c], hi[c]);
      } else {
        lo[c] = std::numeric_limits<float>::infinity();
        hi[c] = -std::numeric_limits<float>::infinity();
      }
    });
    const float mn = *std::min_element(lo.begin(), lo.end());
    const float mx = *std::max_element(hi.begin(), hi.end());
    const float scale = norm_scale(mn, mx);
    parallel_chunks(H, true, [&](std::int64_t b, std::int64_t e) {
      blend_rows(images + 3 * i * HW, up.data(), mn, scale, lut, out + 3 * i * HW, W, b, e);
    });
  }
}

}  // namespace onnxlens
