// Bilinear affine warps of image planes and their exact adjoints (synthesis' transformation
// robustness, differentiated), with the integer pads and crops around a warp fused into it.
#pragma once

#include <cstdint>

namespace onnxlens {

// The geometry of one fused "pad/crop -> affine warp -> crop" pass, per image i:
// - the source x is (n, c, h, w);
// - the warp works on a plane of (ph, pw) pixels whose pixel t shows source pixel t + pre[i]
//   ((y, x) offsets), and `fill` where that falls outside the source (the pads);
// - theta[i] (row-major 2x2, double) maps an output offset from the plane centre
//   ((ph-1)/2, (pw-1)/2) to its source offset: src = centre + M (dst - centre), in (y, x);
//   bilinear, the plane's outside counting as 0;
// - the output (n, c, oh, ow) is the warped plane's window at post[i]: out[y, x] = warped[y +
//   post_y, x + post_x].
struct WarpWindow {
  std::int64_t n, c, h, w;    // source
  std::int64_t ph, pw;        // warp plane
  std::int64_t oh, ow;        // output
  const double* theta;        // (n, 2, 2)
  const std::int64_t* pre;    // (n, 2) or nullptr (zeros)
  const std::int64_t* post;   // (n, 2) or nullptr (zeros)
  float fill;
};

// out: (n, c, oh, ow).
void warp_window(const float* x, const WarpWindow& geo, float* out);

// The transpose: g (n, c, oh, ow) -> out (n, c, h, w), overwritten. The fill is a constant and
// gets no gradient.
void warp_window_adjoint(const float* g, const WarpWindow& geo, float* out);

// The plain warp of a plane onto itself (no pads or crops): the window with ph = oh = h, pw =
// ow = w and zero offsets.
void warp_affine(const float* x, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                 const double* theta, float* out);
void warp_affine_adjoint(const float* g, std::int64_t n, std::int64_t c, std::int64_t h,
                         std::int64_t w, const double* theta, float* out);

}  // namespace onnxlens
