// Render kernels: resize, colormaps, overlay, grids.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>

#include "bind_common.hpp"
#include "kernels/colormap.hpp"
#include "kernels/grid.hpp"
#include "kernels/overlay.hpp"
#include "kernels/parallel.hpp"
#include "kernels/resize.hpp"

namespace py = pybind11;
using onnxlens::bind::checked;

namespace {

void check_size(py::ssize_t v, const char* what) {
  if (v <= 0) throw py::value_error(std::string(what) + " must be >= 1, got " + std::to_string(v));
}

py::array_t<float> resize_bilinear(const py::handle& maps_obj, py::ssize_t height, py::ssize_t width) {
  auto maps = checked<float>(maps_obj, "maps", 3, "(N, h, w)");
  check_size(height, "height");
  check_size(width, "width");
  const py::ssize_t n = maps.shape(0), h = maps.shape(1), w = maps.shape(2);
  if (h == 0 || w == 0) throw py::value_error("maps: h and w must be >= 1");
  py::array_t<float> out({n, height, width});
  const float* src = maps.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    onnxlens::resize_bilinear(src, n, h, w, dst, height, width);
  }
  return out;
}

py::array_t<std::uint8_t> colormap_table(const std::string& name) {
  const onnxlens::Rgb* t = onnxlens::find_colormap(name);
  py::array_t<std::uint8_t> out({256, 3});
  std::memcpy(out.mutable_data(), t, 256 * 3);
  return out;
}

py::array_t<std::uint8_t> apply_colormap(const py::handle& values_obj, const std::string& name) {
  auto values = checked<float>(values_obj, "values", -1, "(...)");
  const onnxlens::Rgb* t = onnxlens::find_colormap(name);
  std::vector<py::ssize_t> shape(values.shape(), values.shape() + values.ndim());
  shape.push_back(3);
  py::array_t<std::uint8_t> out(shape);
  const float* src = values.data();
  std::uint8_t* dst = out.mutable_data();
  const py::ssize_t n = values.size();
  {
    py::gil_scoped_release nogil;
    onnxlens::apply_colormap(src, n, t, dst);
  }
  return out;
}

py::array_t<std::uint8_t> overlay(const py::handle& images_obj, const py::handle& maps_obj,
                                  const std::string& colormap, float alpha, const py::object& out_obj) {
  auto images = checked<std::uint8_t>(images_obj, "images", 4, "(N, H, W, 3)");
  auto maps = checked<float>(maps_obj, "maps", 3, "(N, h, w)");
  if (images.shape(3) != 3)
    throw py::value_error("images: expected uint8 array of shape (N, H, W, 3) (RGB), got shape " +
                          onnxlens::bind::shape_str(images));
  if (images.shape(0) != maps.shape(0))
    throw py::value_error("images and maps differ in batch size: " + onnxlens::bind::shape_str(images) +
                          " vs " + onnxlens::bind::shape_str(maps));
  if (maps.shape(1) == 0 || maps.shape(2) == 0) throw py::value_error("maps: h and w must be >= 1");
  if (!(alpha >= 0.f && alpha <= 1.f)) throw py::value_error("alpha must be in [0, 1], got " + std::to_string(alpha));
  const onnxlens::Rgb* t = onnxlens::find_colormap(colormap);
  const py::ssize_t n = images.shape(0), H = images.shape(1), W = images.shape(2);
  py::array_t<std::uint8_t> out;
  if (out_obj.is_none()) {
    out = py::array_t<std::uint8_t>({n, H, W, py::ssize_t{3}});
  } else {
    // Reusing a buffer skips the page faults of a fresh 3*N*H*W allocation on every call.
    out = checked<std::uint8_t>(out_obj, "out", 4, "(N, H, W, 3)");
    if (out.shape(0) != n || out.shape(1) != H || out.shape(2) != W || out.shape(3) != 3)
      throw py::value_error("out: expected shape " + onnxlens::bind::shape_str(images) + " like images, got " +
                            onnxlens::bind::shape_str(out));
    if (!out.writeable()) throw py::value_error("out: array is read-only");
    const auto* ob = static_cast<const std::uint8_t*>(out.data());
    const auto* ib = images.data();
    const auto* mb = reinterpret_cast<const std::uint8_t*>(maps.data());
    const std::size_t on = out.nbytes();
    const bool overlaps_images = ob != ib && ob < ib + images.nbytes() && ib < ob + on;
    const bool overlaps_maps = mb < ob + on && ob < mb + maps.nbytes();
    if (overlaps_images || overlaps_maps)
      throw py::value_error("out: must be a separate array or exactly `images` (in place)");
  }
  const std::uint8_t* img = images.data();
  const float* m = maps.data();
  std::uint8_t* dst = out.mutable_data();
  const py::ssize_t h = maps.shape(1), w = maps.shape(2);
  {
    py::gil_scoped_release nogil;
    onnxlens::overlay(img, m, n, h, w, H, W, t, alpha, dst);
  }
  return out;
}

onnxlens::GridGeometry geometry(py::ssize_t count, py::ssize_t h, py::ssize_t w, py::ssize_t ncols,
                                py::ssize_t pad, py::ssize_t scale) {
  return onnxlens::grid_geometry(count, h, w, ncols, pad, scale);
}

py::array_t<float> channel_grid_f32(const py::handle& acts_obj, py::ssize_t ncols, py::ssize_t pad,
                                    py::ssize_t scale, float pad_value) {
  auto acts = checked<float>(acts_obj, "acts", 3, "(C, h, w)");
  const auto g = geometry(acts.shape(0), acts.shape(1), acts.shape(2), ncols, pad, scale);
  py::array_t<float> out({g.height, g.width});
  const float* src = acts.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    onnxlens::channel_grid_f32(src, g, pad_value, dst);
  }
  return out;
}

py::array_t<std::uint8_t> channel_grid_rgb(const py::handle& acts_obj, py::ssize_t ncols,
                                           py::ssize_t pad, py::ssize_t scale,
                                           const std::string& colormap,
                                           std::array<std::uint8_t, 3> pad_color) {
  auto acts = checked<float>(acts_obj, "acts", 3, "(C, h, w)");
  const onnxlens::Rgb* t = onnxlens::find_colormap(colormap);
  const auto g = geometry(acts.shape(0), acts.shape(1), acts.shape(2), ncols, pad, scale);
  py::array_t<std::uint8_t> out({g.height, g.width, py::ssize_t{3}});
  const float* src = acts.data();
  std::uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    onnxlens::channel_grid_rgb(src, g, t, pad_color.data(), dst);
  }
  return out;
}

py::array_t<std::uint8_t> filter_grid(const py::handle& w_obj, py::ssize_t ncols, py::ssize_t pad,
                                      py::ssize_t scale, std::array<std::uint8_t, 3> pad_color) {
  auto wts = checked<float>(w_obj, "weights", 4, "(O, I, kh, kw) with I in {1, 3}");
  const py::ssize_t in = wts.shape(1);
  if (in != 1 && in != 3)
    throw py::value_error("weights: expected float32 C-contiguous array of shape (O, I, kh, kw) with I in {1, 3}, got shape " +
                          onnxlens::bind::shape_str(wts));
  const auto g = geometry(wts.shape(0), wts.shape(2), wts.shape(3), ncols, pad, scale);
  py::array_t<std::uint8_t> out({g.height, g.width, py::ssize_t{3}});
  const float* src = wts.data();
  std::uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    onnxlens::filter_grid_rgb(src, in, g, pad_color.data(), dst);
  }
  return out;
}

}  // namespace

void bind_render(py::module_& m) {
  m.def("max_threads", &onnxlens::max_threads,
        "Threads the kernels use (OpenMP's max threads; OMP_NUM_THREADS at import).");
  m.def("resize_bilinear", &resize_bilinear, py::arg("maps"), py::arg("height"), py::arg("width"),
        "float32 (N, h, w) -> (N, height, width), equal to cv2.resize INTER_LINEAR per map.");
  m.def("colormap_names", &onnxlens::colormap_names, "Names of the built-in 256-entry colormaps.");
  m.def("colormap_table", &colormap_table, py::arg("name"), "uint8 (256, 3) RGB table of a colormap.");
  m.def("apply_colormap", &apply_colormap, py::arg("values"), py::arg("colormap"),
        "float32 values in [0, 1] (any shape) -> uint8 RGB (..., 3); index floor(clip(v,0,1)*255+0.5), NaN -> 0.");
  m.def("overlay", &overlay, py::arg("images"), py::arg("maps"), py::arg("colormap"), py::arg("alpha"),
        py::arg("out") = py::none(),
        "Fused upsample + min-max normalise + colormap + alpha blend: uint8 (N,H,W,3), float32 (N,h,w) -> uint8 (N,H,W,3).");
  m.def("channel_grid_f32", &channel_grid_f32, py::arg("acts"), py::arg("ncols"), py::arg("pad"),
        py::arg("scale"), py::arg("pad_value") = 0.f,
        "float32 (C, h, w) -> float32 mosaic of standardised channels (display values 0..255).");
  m.def("channel_grid_rgb", &channel_grid_rgb, py::arg("acts"), py::arg("ncols"), py::arg("pad"),
        py::arg("scale"), py::arg("colormap"), py::arg("pad_color") = std::array<std::uint8_t, 3>{255, 255, 255},
        "float32 (C, h, w) -> uint8 RGB mosaic of standardised, colour-mapped channels.");
  m.def("filter_grid", &filter_grid, py::arg("weights"), py::arg("ncols"), py::arg("pad"), py::arg("scale"),
        py::arg("pad_color") = std::array<std::uint8_t, 3>{255, 255, 255},
        "float32 (O, I, kh, kw), I in {1, 3} -> uint8 RGB mosaic of min-max normalised filters.");
}
