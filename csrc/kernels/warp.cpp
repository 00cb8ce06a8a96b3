#include "kernels/warp.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/parallel.hpp"

namespace onnxlens {

namespace {

// Visits every output pixel p of image i with its four taps into the source plane (flat index,
// weight; a tap outside the source has weight 0 and index 0, so callers need no branches) and
// the constant the fill contributes (fill times the weight of the taps on the plane's pads).
template <class F>
void for_each_tap(const WarpWindow& g, std::int64_t i, F&& f) {
  const double* m = g.theta + 4 * i;
  const std::int64_t pre_y = g.pre ? g.pre[2 * i] : 0, pre_x = g.pre ? g.pre[2 * i + 1] : 0;
  const std::int64_t post_y = g.post ? g.post[2 * i] : 0, post_x = g.post ? g.post[2 * i + 1] : 0;
  const double cy = (g.ph - 1) / 2.0, cx = (g.pw - 1) / 2.0;
  // Taps whose 2x2 block lies on the source (and so on the plane) take the fast path: plane
  // pixel t is source pixel t + pre, so that is t in [lo, hi) per axis.
  const std::int64_t lo_y = std::max<std::int64_t>(0, -pre_y);
  const std::int64_t hi_y = std::min<std::int64_t>(g.ph, g.h - pre_y) - 1;
  const std::int64_t lo_x = std::max<std::int64_t>(0, -pre_x);
  const std::int64_t hi_x = std::min<std::int64_t>(g.pw, g.w - pre_x) - 1;
  const double dx0 = post_x - cx;
  for (std::int64_t y = 0; y < g.oh; ++y) {
    const double dy = y + post_y - cy;
    // the source point is affine in x: a row start plus x times the column step
    const double sy0 = cy + m[0] * dy + m[1] * dx0, sx0 = cx + m[2] * dy + m[3] * dx0;
    for (std::int64_t x = 0; x < g.ow; ++x) {
      const double sy = sy0 + m[1] * x, sx = sx0 + m[3] * x;
      const double y0 = std::floor(sy), x0 = std::floor(sx);
      const double fy = sy - y0, fx = sx - x0;
      const auto ty = static_cast<std::int64_t>(y0), tx = static_cast<std::int64_t>(x0);
      const double wts[4] = {(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx};
      std::int64_t idx[4];
      float wt[4];
      if (ty >= lo_y && ty < hi_y && tx >= lo_x && tx < hi_x) {
        const std::int64_t base = (ty + pre_y) * g.w + tx + pre_x;
        idx[0] = base, idx[1] = base + 1, idx[2] = base + g.w, idx[3] = base + g.w + 1;
        for (int k = 0; k < 4; ++k) wt[k] = static_cast<float>(wts[k]);
        f(y * g.ow + x, idx, wt, 0.f);
        continue;
      }
      double constant = 0.0;
      for (int k = 0; k < 4; ++k) {
        const std::int64_t py = ty + (k >> 1), px = tx + (k & 1);
        const bool on_plane = py >= 0 && py < g.ph && px >= 0 && px < g.pw;
        const std::int64_t sy_ = py + pre_y, sx_ = px + pre_x;
        const bool on_source = on_plane && sy_ >= 0 && sy_ < g.h && sx_ >= 0 && sx_ < g.w;
        idx[k] = on_source ? sy_ * g.w + sx_ : 0;
        wt[k] = on_source ? static_cast<float>(wts[k]) : 0.f;
        if (on_plane && !on_source) constant += wts[k];
      }
      f(y * g.ow + x, idx, wt, static_cast<float>(constant * g.fill));
    }
  }
}

}  // namespace

void warp_window(const float* x, const WarpWindow& geo, float* out) {
  const std::int64_t src_plane = geo.h * geo.w, out_plane = geo.oh * geo.ow, c = geo.c;
  parallel_for(geo.n, geo.n > 1, [&](std::int64_t i) {
    const float* src = x + i * c * src_plane;
    float* dst = out + i * c * out_plane;
    for_each_tap(geo, i, [&](std::int64_t p, const std::int64_t* idx, const float* wt, float k) {
      for (std::int64_t ch = 0; ch < c; ++ch) {
        const float* s = src + ch * src_plane;
        dst[ch * out_plane + p] =
            s[idx[0]] * wt[0] + s[idx[1]] * wt[1] + s[idx[2]] * wt[2] + s[idx[3]] * wt[3] + k;
      }
    });
  });
}

void warp_window_adjoint(const float* g, const WarpWindow& geo, float* out) {
  const std::int64_t src_plane = geo.h * geo.w, out_plane = geo.oh * geo.ow, c = geo.c;
  parallel_for(geo.n, geo.n > 1, [&](std::int64_t i) {
    const float* grad = g + i * c * out_plane;
    float* dst = out + i * c * src_plane;
    std::memset(dst, 0, sizeof(float) * static_cast<std::size_t>(c * src_plane));
    for_each_tap(geo, i, [&](std::int64_t p, const std::int64_t* idx, const float* wt, float) {
      for (std::int64_t ch = 0; ch < c; ++ch) {
        const float v = grad[ch * out_plane + p];
        float* d = dst + ch * src_plane;
        for (int k = 0; k < 4; ++k) d[idx[k]] += v * wt[k];
      }
    });
  });
}

void warp_affine(const float* x, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                 const double* theta, float* out) {
  warp_window(x, WarpWindow{n, c, h, w, h, w, h, w, theta, nullptr, nullptr, 0.f}, out);
}

void warp_affine_adjoint(const float* g, std::int64_t n, std::int64_t c, std::int64_t h,
                         std::int64_t w, const double* theta, float* out) {
  warp_window_adjoint(g, WarpWindow{n, c, h, w, h, w, h, w, theta, nullptr, nullptr, 0.f}, out);
}

}  // namespace onnxlens
