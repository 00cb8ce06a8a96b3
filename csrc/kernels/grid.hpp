// Mosaics of feature-map channels and of first-layer filters.
#pragma once

#include <cstdint>

#include "kernels/colormap.hpp"

namespace onnxlens {

// Tiles of (h*scale, w*scale) pixels in `ncols` columns, `pad` pixels of border around and
// between tiles: Hm = nrows*h*scale + (nrows+1)*pad, Wm likewise.
struct GridGeometry {
  std::int64_t count, h, w, ncols, nrows, pad, scale, tile_h, tile_w, height, width;
};

GridGeometry grid_geometry(std::int64_t count, std::int64_t h, std::int64_t w, std::int64_t ncols,
                           std::int64_t pad, std::int64_t scale);

// The classic Keras-notebook standardisation of one channel into display values:
// v = clip((x - mean) / std * 64 + 128, 0, 255) with mean/std (population) over the finite values
// in double precision. A channel whose std is 0 (constant) or that has no finite value is drawn
// flat at 128; non-finite pixels are drawn at 128. Never divides by zero.
constexpr float k_flat_value = 128.f;
void standardise_channel(const float* x, std::int64_t count, float* out);

// acts (C, h, w) -> out (Hm, Wm) float32 display values in [0, 255]; borders get pad_value.
void channel_grid_f32(const float* acts, const GridGeometry& g, float pad_value, float* out);

// acts (C, h, w) -> out (Hm, Wm, 3) uint8; display value v -> table[floor(v + 0.5)].
void channel_grid_rgb(const float* acts, const GridGeometry& g, const Rgb* table,
                      const std::uint8_t pad_rgb[3], std::uint8_t* out);

// weights (O, I, kh, kw) with I in {1, 3} -> out (Hm, Wm, 3) uint8. Each filter is min-max
// normalised over its I*kh*kw values to floor(255 * t + 0.5) (non-finite values count as the
// minimum; a constant filter is flat 128); I == 3 draws input channel c as colour c, I == 1
// draws grey. Upscaled by nearest neighbour (integer `scale` in g).
void filter_grid_rgb(const float* weights, std::int64_t in_channels, const GridGeometry& g,
                     const std::uint8_t pad_rgb[3], std::uint8_t* out);

}  // namespace onnxlens
