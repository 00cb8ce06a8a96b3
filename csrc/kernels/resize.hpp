// Bilinear resampling with OpenCV's INTER_LINEAR conventions (half-pixel centres, edge clamp).
#pragma once

#include <cstdint>
#include <vector>

namespace onnxlens {

// For each destination index d along one axis: source index i0 (i1 = i0 + 1 clamped) and weights
// w0 + w1 = 1. Built once per (src, dst) size pair; every pixel then does two loads and an FMA-free
// multiply-add, as cv::resize does for float32.
struct LinearTable {
  std::vector<std::int32_t> i0, i1;
  std::vector<float> w0, w1;
};

LinearTable make_linear_table(std::int64_t src, std::int64_t dst);

// Resizes one (h, w) float32 map to (H, W). `rows` is scratch of at least h * W floats (the
// horizontally resampled source rows). Output rows [row_begin, row_end) only.
void resize_map_rows(const float* src, std::int64_t h, std::int64_t w, const LinearTable& xt,
                     const LinearTable& yt, float* rows_scratch, bool rows_ready, float* dst,
                     std::int64_t W, std::int64_t row_begin, std::int64_t row_end);

// Horizontal pass only: (h, w) -> (h, W) into `rows`.
void resize_rows_horizontal(const float* src, std::int64_t h, std::int64_t w,
                            const LinearTable& xt, float* rows, std::int64_t W);

// maps (N, h, w) -> out (N, H, W). Parallel over maps, or over rows when N is small.
void resize_bilinear(const float* maps, std::int64_t n, std::int64_t h, std::int64_t w,
                     float* out, std::int64_t H, std::int64_t W);

}  // namespace onnxlens
