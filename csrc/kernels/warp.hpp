// Bilinear affine warps of image planes and their exact adjoints (synthesis' random scale and
// rotation, differentiated). Zero outside the source plane; the output keeps the plane's size.
#pragma once

#include <cstdint>

namespace onnxlens {

// x: (n, c, h, w). theta: n 2x2 matrices (row-major, double) mapping an output pixel's offset
// from the plane centre ((h-1)/2, (w-1)/2) to its source offset: src = centre + M (dst - centre),
// (y, x) order. Each output pixel is the bilinear blend of its four source neighbours, those
// outside the plane counting as 0.
void warp_affine(const float* x, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                 const double* theta, float* out);

// The transpose of warp_affine: each output pixel's gradient is scattered back to its four
// source neighbours with the same weights. g and out are (n, c, h, w); out is overwritten.
void warp_affine_adjoint(const float* g, std::int64_t n, std::int64_t c, std::int64_t h,
                         std::int64_t w, const double* theta, float* out);

}  // namespace onnxlens
