#include "kernels/grid.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/parallel.hpp"

namespace onnxlens {

GridGeometry grid_geometry(std::int64_t count, std::int64_t h, std::int64_t w, std::int64_t ncols,
                           std::int64_t pad, std::int64_t scale) {
  if (count <= 0 || h <= 0 || w <= 0) throw std::invalid_argument("grid: empty input");
  if (ncols <= 0) throw std::invalid_argument("grid: ncols must be >= 1");
  if (pad < 0) throw std::invalid_argument("grid: pad must be >= 0");
  if (scale <= 0) throw std::invalid_argument("grid: scale must be >= 1");
  GridGeometry g{};
  g.count = count;
  g.h = h;
  g.w = w;
  g.ncols = std::min(ncols, count);
  g.nrows = (count + g.ncols - 1) / g.ncols;
  g.pad = pad;
  g.scale = scale;
  g.tile_h = h * scale;
  g.tile_w = w * scale;
  g.height = g.nrows * g.tile_h + (g.nrows + 1) * pad;
  g.width = g.ncols * g.tile_w + (g.ncols + 1) * pad;
  return g;
}

void standardise_channel(const float* x, std::int64_t count, float* out) {
  double sum = 0.0;
  std::int64_t finite = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    if (std::isfinite(x[i])) {
      sum += x[i];
      ++finite;
    }
  }
  double var = 0.0;
  const double mean = finite ? sum / static_cast<double>(finite) : 0.0;
  for (std::int64_t i = 0; i < count; ++i) {
    if (std::isfinite(x[i])) {
      const double d = x[i] - mean;
      var += d * d;
    }
  }
  const double sd = finite ? std::sqrt(var / static_cast<double>(finite)) : 0.0;
  // Exactly-constant channels give sd == 0 (the double sum of n equal floats is exact).
  if (!(sd > 0.0) || !std::isfinite(sd)) {
    std::fill(out, out + count, k_flat_value);
    return;
  }
  const double k = 64.0 / sd;
  for (std::int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(x[i])) {
      out[i] = k_flat_value;
      continue;
    }
    const double v = (x[i] - mean) * k + 128.0;
    out[i] = static_cast<float>(std::min(255.0, std::max(0.0, v)));
  }
}

namespace {

// Writes tile t's display values (h, w) into the mosaic via `put(y, x, value_index)`.
template <class Put>
void place_tile(const GridGeometry& g, std::int64_t t, Put&& put) {
  const std::int64_t r = t / g.ncols, c = t % g.ncols;
  const std::int64_t y0 = g.pad + r * (g.tile_h + g.pad);
  const std::int64_t x0 = g.pad + c * (g.tile_w + g.pad);
  for (std::int64_t y = 0; y < g.tile_h; ++y)
    for (std::int64_t x = 0; x < g.tile_w; ++x) put(y0 + y, x0 + x, (y / g.scale) * g.w + x / g.scale);
}

}  // namespace

void channel_grid_f32(const float* acts, const GridGeometry& g, float pad_value, float* out) {
  std::fill(out, out + g.height * g.width, pad_value);
  const std::int64_t hw = g.h * g.w;
  parallel_for(g.count, g.count > 1, [&](std::int64_t t) {
    std::vector<float> v(hw);
    standardise_channel(acts + t * hw, hw, v.data());
    place_tile(g, t, [&](std::int64_t y, std::int64_t x, std::int64_t i) { out[y * g.width + x] = v[i]; });
  });
}

void channel_grid_rgb(const float* acts, const GridGeometry& g, const Rgb* table,
                      const std::uint8_t pad_rgb[3], std::uint8_t* out) {
  for (std::int64_t p = 0; p < g.height * g.width; ++p)
    for (int c = 0; c < 3; ++c) out[3 * p + c] = pad_rgb[c];
  const std::int64_t hw = g.h * g.w;
  parallel_for(g.count, g.count > 1, [&](std::int64_t t) {
    std::vector<float> v(hw);
    standardise_channel(acts + t * hw, hw, v.data());
    place_tile(g, t, [&](std::int64_t y, std::int64_t x, std::int64_t i) {
      const int idx = static_cast<int>(v[i] + 0.5f);  // v is in [0, 255]
      const Rgb& col = table[std::min(255, std::max(0, idx))];
      std::uint8_t* o = out + 3 * (y * g.width + x);
      o[0] = col[0];
      o[1] = col[1];
      o[2] = col[2];
    });
  });
}

void filter_grid_rgb(const float* weights, std::int64_t in_channels, const GridGeometry& g,
                     const std::uint8_t pad_rgb[3], std::uint8_t* out) {
  if (in_channels != 1 && in_channels != 3)
    throw std::invalid_argument("filter grid: input channels must be 1 or 3");
  for (std::int64_t p = 0; p < g.height * g.width; ++p)
    for (int c = 0; c < 3; ++c) out[3 * p + c] = pad_rgb[c];
  const std::int64_t hw = g.h * g.w;
  const std::int64_t per_filter = in_channels * hw;
  parallel_for(g.count, g.count > 1, [&](std::int64_t t) {
    const float* f = weights + t * per_filter;
    float mn = std::numeric_limits<float>::infinity(), mx = -mn;
    for (std::int64_t i = 0; i < per_filter; ++i) {
      if (std::isfinite(f[i])) {
        mn = std::min(mn, f[i]);
        mx = std::max(mx, f[i]);
      }
    }
    const bool flat = !(mx > mn) || !std::isfinite(mx - mn);
    const float scale = flat ? 0.f : 255.f / (mx - mn);
    std::vector<std::uint8_t> v(per_filter);
    for (std::int64_t i = 0; i < per_filter; ++i) {
      if (flat) {
        v[i] = 128;
      } else {
        const float x = std::isfinite(f[i]) ? f[i] : mn;
        const float q = std::min(255.f, std::max(0.f, (x - mn) * scale + 0.5f));
        v[i] = static_cast<std::uint8_t>(q);
      }
    }
    place_tile(g, t, [&](std::int64_t y, std::int64_t x, std::int64_t i) {
      std::uint8_t* o = out + 3 * (y * g.width + x);
      for (int c = 0; c < 3; ++c) o[c] = v[(in_channels == 3 ? c : 0) * hw + i];
    });
  });
}

}  // namespace onnxlens
