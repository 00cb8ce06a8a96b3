#include "kernels/resize.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/parallel.hpp"

namespace onnxlens {

LinearTable make_linear_table(std::int64_t src, std::int64_t dst) {
  if (src <= 0 || dst <= 0) throw std::invalid_argument("resize: sizes must be positive");
  LinearTable t;
  t.i0.resize(dst);
  t.i1.resize(dst);
  t.w0.resize(dst);
  t.w1.resize(dst);
  // cv::resize: scale = src/dst in double, fx = float((d + 0.5) * scale - 0.5), sx = floor(fx);
  // out-of-range positions clamp to the edge pixel with weight 1 (no extrapolation).
  const double scale = static_cast<double>(src) / static_cast<double>(dst);
  for (std::int64_t d = 0; d < dst; ++d) {
    float fx = static_cast<float>((static_cast<double>(d) + 0.5) * scale - 0.5);
    std::int64_t sx = static_cast<std::int64_t>(std::floor(fx));
    fx -= static_cast<float>(sx);
    if (sx < 0) {
      sx = 0;
      fx = 0.f;
    }
    if (sx >= src - 1) {
      sx = src - 1;
      fx = 0.f;
    }
    t.i0[d] = static_cast<std::int32_t>(sx);
    t.i1[d] = static_cast<std::int32_t>(std::min(sx + 1, src - 1));
    t.w0[d] = 1.f - fx;
    t.w1[d] = fx;
  }
  return t;
}

void resize_rows_horizontal(const float* src, std::int64_t h, std::int64_t w,
                            const LinearTable& xt, float* rows, std::int64_t W) {
  (void)w;
  const std::int32_t* i0 = xt.i0.data();
  const std::int32_t* i1 = xt.i1.data();
  const float* w0 = xt.w0.data();
  const float* w1 = xt.w1.data();
  for (std::int64_t y = 0; y < h; ++y) {
    const float* s = src + y * w;
    float* r = rows + y * W;
    for (std::int64_t x = 0; x < W; ++x) r[x] = s[i0[x]] * w0[x] + s[i1[x]] * w1[x];
  }
}

void resize_map_rows(const float* src, std::int64_t h, std::int64_t w, const LinearTable& xt,
                     const LinearTable& yt, float* rows, bool rows_ready, float* dst,
                     std::int64_t W, std::int64_t row_begin, std::int64_t row_end) {
  if (!rows_ready) resize_rows_horizontal(src, h, w, xt, rows, W);
  for (std::int64_t y = row_begin; y < row_end; ++y) {
    const float* r0 = rows + static_cast<std::int64_t>(yt.i0[y]) * W;
    const float* r1 = rows + static_cast<std::int64_t>(yt.i1[y]) * W;
    const float b0 = yt.w0[y];
    const float b1 = yt.w1[y];
    float* d = dst + y * W;
    for (std::int64_t x = 0; x < W; ++x) d[x] = r0[x] * b0 + r1[x] * b1;
  }
}

void resize_bilinear(const float* maps, std::int64_t n, std::int64_t h, std::int64_t w,
                     float* out, std::int64_t H, std::int64_t W) {
  if (n == 0) return;
  const LinearTable xt = make_linear_table(w, W);
  const LinearTable yt = make_linear_table(h, H);
  const bool over_maps = n >= max_threads();
  if (over_maps) {
    parallel_for(n, true, [&](std::int64_t i) {
      std::vector<float> rows(static_cast<std::size_t>(h * W));
      resize_map_rows(maps + i * h * w, h, w, xt, yt, rows.data(), false, out + i * H * W, W, 0,
                      H);
    });
  } else {
    std::vector<float> rows(static_cast<std::size_t>(h * W));
    for (std::int64_t i = 0; i < n; ++i) {
      resize_rows_horizontal(maps + i * h * w, h, w, xt, rows.data(), W);
      parallel_chunks(H, true, [&](std::int64_t b, std::int64_t e) {
        resize_map_rows(maps + i * h * w, h, w, xt, yt, rows.data(), true, out + i * H * W, W, b,
                        e);
      });
    }
  }
}

}  // namespace onnxlens
