#include "kernels/overlay.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/parallel.hpp"
#include "kernels/resize.hpp"

namespace onnxlens {
namespace {

struct Blend {
  float img[256];       // (1 - a) * v for every uint8 v
  float col[256 * 3];   // a * table[i][c] + 0.5 (the rounding offset folded in)
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
  float lo = v[0], hi = v[0];
  for (std::int64_t i = 1; i < count; ++i) {
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  mn = lo;
  mx = hi;
}

void blend_rows(const std::uint8_t* img, const float* up, float mn, float scale, const Blend& lut,
                std::uint8_t* out, std::int64_t W, std::int64_t row_begin, std::int64_t row_end) {
  for (std::int64_t y = row_begin; y < row_end; ++y) {
    const float* u = up + y * W;
    const std::uint8_t* p = img + 3 * y * W;
    std::uint8_t* o = out + 3 * y * W;
    for (std::int64_t x = 0; x < W; ++x) {
      float t = (u[x] - mn) * scale + 0.5f;
      // Clamp guards float overshoot only (u is a convex combination of values in [mn, mx]).
      t = std::min(std::max(t, 0.f), 255.f);
      const int idx = static_cast<int>(t);
      const float* c = lut.col + 3 * idx;
      o[3 * x + 0] = static_cast<std::uint8_t>(lut.img[p[3 * x + 0]] + c[0]);
      o[3 * x + 1] = static_cast<std::uint8_t>(lut.img[p[3 * x + 1]] + c[1]);
      o[3 * x + 2] = static_cast<std::uint8_t>(lut.img[p[3 * x + 2]] + c[2]);
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
  Blend lut;
  for (int v = 0; v < 256; ++v) lut.img[v] = (1.f - alpha) * static_cast<float>(v);
  for (int i = 0; i < 256; ++i)
    for (int c = 0; c < 3; ++c) lut.col[3 * i + c] = alpha * static_cast<float>(table[i][c]) + 0.5f;

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
