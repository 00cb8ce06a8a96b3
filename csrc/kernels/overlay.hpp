// Fused heat-map overlay: upsample -> min-max normalise -> colormap -> alpha blend.
#pragma once

#include <cstdint>

#include "kernels/colormap.hpp"

namespace onnxlens {

// images (N, H, W, 3) uint8 RGB, maps (N, h, w) float32 -> out (N, H, W, 3) uint8.
// Per map: bilinear upsample to (H, W) exactly as resize_bilinear; non-finite values (NaN, inf)
// count as the map's finite minimum; t = (v - min) * (255 / (max - min)) and colour index
// floor(t + 0.5), a constant (or all-NaN) map -> index 0; out = floor((1 - a) * img + a * colour
// + 0.5). `out` may alias `images` (each pixel is read before it is written).
void overlay(const std::uint8_t* images, const float* maps, std::int64_t n, std::int64_t h,
             std::int64_t w, std::int64_t H, std::int64_t W, const Rgb* table, float alpha,
             std::uint8_t* out);

}  // namespace onnxlens
