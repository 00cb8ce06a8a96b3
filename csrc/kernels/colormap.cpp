#include "kernels/colormap.hpp"

#include <cstring>
#include <stdexcept>

#include "kernels/colormap_tables.hpp"
#include "kernels/parallel.hpp"

namespace onnxlens {

const Rgb* find_colormap(const std::string& name) {
  for (const auto& c : tables::k_colormaps) {
    if (name == c.name) return c.rgb;
  }
  std::string known;
  for (const auto& c : tables::k_colormaps) {
    if (!known.empty()) known += ", ";
    known += c.name;
  }
  throw std::invalid_argument("unknown colormap '" + name + "'; known colormaps: " + known);
}

std::vector<std::string> colormap_names() {
  std::vector<std::string> out;
  for (const auto& c : tables::k_colormaps) out.emplace_back(c.name);
  return out;
}

void apply_colormap(const float* values, std::int64_t n, const Rgb* table, std::uint8_t* rgb) {
  parallel_chunks(n, n >= (1 << 16), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const Rgb& c = table[colormap_index(values[i])];
      rgb[3 * i + 0] = c[0];
      rgb[3 * i + 1] = c[1];
      rgb[3 * i + 2] = c[2];
    }
  });
}

}  // namespace onnxlens
