// 256-entry RGB lookup tables (frozen from matplotlib by scripts/gen_colormaps.py).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace onnxlens {

using Rgb = std::uint8_t[3];

// Table for `name`; throws std::invalid_argument naming the known maps.
const Rgb* find_colormap(const std::string& name);
std::vector<std::string> colormap_names();

// The one value -> index rule every kernel uses: NaN -> 0, clamp to [0, 1], then
// floor(v * 255 + 0.5) in float32 (round half up).
inline int colormap_index(float v) {
  if (!(v > 0.f)) return 0;  // also NaN
  if (v >= 1.f) return 255;
  return static_cast<int>(v * 255.f + 0.5f);
}

// values (n) in [0, 1] -> rgb (n, 3).
void apply_colormap(const float* values, std::int64_t n, const Rgb* table, std::uint8_t* rgb);

}  // namespace onnxlens
