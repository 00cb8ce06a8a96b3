#include "kernels/warp.hpp"

#include <cmath>
#include <cstring>

#include "kernels/parallel.hpp"

namespace onnxlens {

namespace {

// Visits every output pixel p of one image with its four source taps (flat index, weight; a tap
// outside the plane has weight 0 and index 0, so callers need no branches). The source point is
// affine in the output column, so it advances by a constant per column.
template <class F>
void for_each_tap(const double* m, std::int64_t h, std::int64_t w, F&& f) {
  const double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
  for (std::int64_t y = 0; y < h; ++y) {
    const double dy = y - cy;
    for (std::int64_t x = 0; x < w; ++x) {
      const double dx = x - cx;
      const double sy = cy + m[0] * dy + m[1] * dx;
      const double sx = cx + m[2] * dy + m[3] * dx;
      const double y0 = std::floor(sy), x0 = std::floor(sx);
      const double fy = sy - y0, fx = sx - x0;
      const auto iy = static_cast<std::int64_t>(y0), ix = static_cast<std::int64_t>(x0);
      const bool y0in = iy >= 0 && iy < h, y1in = iy + 1 >= 0 && iy + 1 < h;
      const bool x0in = ix >= 0 && ix < w, x1in = ix + 1 >= 0 && ix + 1 < w;
      std::int64_t idx[4];
      float wt[4];
      idx[0] = (y0in && x0in) ? iy * w + ix : 0;
      idx[1] = (y0in && x1in) ? iy * w + ix + 1 : 0;
      idx[2] = (y1in && x0in) ? (iy + 1) * w + ix : 0;
      idx[3] = (y1in && x1in) ? (iy + 1) * w + ix + 1 : 0;
      wt[0] = (y0in && x0in) ? static_cast<float>((1 - fy) * (1 - fx)) : 0.f;
      wt[1] = (y0in && x1in) ? static_cast<float>((1 - fy) * fx) : 0.f;
      wt[2] = (y1in && x0in) ? static_cast<float>(fy * (1 - fx)) : 0.f;
      wt[3] = (y1in && x1in) ? static_cast<float>(fy * fx) : 0.f;
      f(y * w + x, idx, wt);
    }
  }
}

}  // namespace

void warp_affine(const float* x, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                 const double* theta, float* out) {
  const std::int64_t plane = h * w;
  parallel_for(n, n > 1, [&](std::int64_t i) {
    const float* src = x + i * c * plane;
    float* dst = out + i * c * plane;
    for_each_tap(theta + 4 * i, h, w, [&](std::int64_t p, const std::int64_t* idx, const float* wt) {
      for (std::int64_t ch = 0; ch < c; ++ch) {
        const float* s = src + ch * plane;
        dst[ch * plane + p] = s[idx[0]] * wt[0] + s[idx[1]] * wt[1] + s[idx[2]] * wt[2] + s[idx[3]] * wt[3];
      }
    });
  });
}

void warp_affine_adjoint(const float* g, std::int64_t n, std::int64_t c, std::int64_t h,
                         std::int64_t w, const double* theta, float* out) {
  const std::int64_t plane = h * w;
  parallel_for(n, n > 1, [&](std::int64_t i) {
    const float* src = g + i * c * plane;
    float* dst = out + i * c * plane;
    std::memset(dst, 0, sizeof(float) * static_cast<std::size_t>(c * plane));
    for_each_tap(theta + 4 * i, h, w, [&](std::int64_t p, const std::int64_t* idx, const float* wt) {
      for (std::int64_t ch = 0; ch < c; ++ch) {
        const float v = src[ch * plane + p];
        float* d = dst + ch * plane;
        for (int k = 0; k < 4; ++k) d[idx[k]] += v * wt[k];
      }
    });
  });
}

}  // namespace onnxlens
