// Synthesis kernels: the per-step image work of gradient ascent (warps and their adjoints).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define ONNXLENS_HAS_MXCSR 1
#endif

#include "bind_common.hpp"
#include "kernels/warp.hpp"

namespace py = pybind11;
using onnxlens::bind::checked;

namespace {

using WarpFn = void (*)(const float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                        const double*, float*);

py::array_t<float> run_warp(const py::handle& x_obj, const py::handle& theta_obj, WarpFn fn,
                            const char* arg) {
  auto x = checked<float>(x_obj, arg, 4, "(N, C, H, W)");
  auto theta = checked<double>(theta_obj, "theta", 3, "(N, 2, 2)");
  if (theta.shape(0) != x.shape(0) || theta.shape(1) != 2 || theta.shape(2) != 2)
    throw py::value_error("theta: expected float64 array of shape (N, 2, 2) with N = " +
                          std::to_string(x.shape(0)) + ", got shape " +
                          onnxlens::bind::shape_str(theta));
  const py::ssize_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  if (h * w > (py::ssize_t{1} << 31) - 1) throw py::value_error(std::string(arg) + ": plane too large");
  py::array_t<float> out({n, c, h, w});
  const float* src = x.data();
  const double* th = theta.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    fn(src, n, c, h, w, th, dst);
  }
  return out;
}

#ifdef ONNXLENS_HAS_MXCSR
// MXCSR's flush-to-zero (results) and denormals-are-zero (operands) bits.
constexpr std::uint32_t kFlushBits = 0x8000u | 0x0040u;
#endif

// Sets or clears both bits on the calling thread; returns whether both were set before.
bool flush_denormals(bool on) {
#ifdef ONNXLENS_HAS_MXCSR
  const std::uint32_t csr = _mm_getcsr();
  const bool was = (csr & kFlushBits) == kFlushBits;
  _mm_setcsr(on ? (csr | kFlushBits) : (csr & ~kFlushBits));
  return was;
#else
  (void)on;
  return false;
#endif
}

// Checks and runs one fused window warp (forward: `x` is the source; adjoint: `x` is the output
// gradient and `size` the source's (h, w)).
py::array_t<float> run_window(const py::handle& x_obj, const py::handle& theta_obj,
                              std::pair<std::int64_t, std::int64_t> plane,
                              const py::handle& pre_obj, const py::handle& post_obj,
                              std::pair<std::int64_t, std::int64_t> size, float fill,
                              bool adjoint) {
  const char* arg = adjoint ? "g" : "x";
  auto x = checked<float>(x_obj, arg, 4, "(N, C, H, W)");
  const py::ssize_t n = x.shape(0), c = x.shape(1);
  auto theta = checked<double>(theta_obj, "theta", 3, "(N, 2, 2)");
  auto pre = checked<std::int64_t>(pre_obj, "pre", 2, "(N, 2)");
  auto post = checked<std::int64_t>(post_obj, "post", 2, "(N, 2)");
  for (const auto& [name, a, d] : {std::tuple{"theta", py::array(theta), 3},
                                   std::tuple{"pre", py::array(pre), 2},
                                   std::tuple{"post", py::array(post), 2}}) {
    if (a.shape(0) != n || a.shape(1) != 2 || (d == 3 && a.shape(2) != 2))
      throw py::value_error(std::string(name) + ": expected " + std::to_string(n) +
                            (d == 3 ? " 2x2 matrices" : " (y, x) offsets") + ", got shape " +
                            onnxlens::bind::shape_str(a));
  }
  const auto [ph, pw] = plane;
  const auto [sh, sw] = size;
  if (ph < 1 || pw < 1 || sh < 1 || sw < 1) throw py::value_error("plane and size must be positive");
  const py::ssize_t h = adjoint ? sh : x.shape(2), w = adjoint ? sw : x.shape(3);
  const py::ssize_t oh = adjoint ? x.shape(2) : sh, ow = adjoint ? x.shape(3) : sw;
  if (std::max(h * w, oh * ow) > (py::ssize_t{1} << 31) - 1)
    throw py::value_error(std::string(arg) + ": plane too large");
  const onnxlens::WarpWindow geo{n, c, h, w, ph, pw, oh, ow, theta.data(), pre.data(),
                                 post.data(), fill};
  py::array_t<float> out(adjoint ? std::vector<py::ssize_t>{n, c, h, w}
                                 : std::vector<py::ssize_t>{n, c, oh, ow});
  const float* src = x.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (adjoint)
      onnxlens::warp_window_adjoint(src, geo, dst);
    else
      onnxlens::warp_window(src, geo, dst);
  }
  return out;
}

}  // namespace

void bind_synthesis(py::module_& m) {
  m.def(
      "warp_affine",
      [](const py::handle& x, const py::handle& theta) {
        return run_warp(x, theta, &onnxlens::warp_affine, "x");
      },
      py::arg("x"), py::arg("theta"),
      "float32 (N, C, H, W), float64 (N, 2, 2) -> (N, C, H, W): bilinear warp about the centre, "
      "src = centre + theta[i] @ (dst - centre) in (y, x), zero outside.");
  m.def(
      "warp_affine_adjoint",
      [](const py::handle& g, const py::handle& theta) {
        return run_warp(g, theta, &onnxlens::warp_affine_adjoint, "g");
      },
      py::arg("g"), py::arg("theta"),
      "The transpose of warp_affine: float32 (N, C, H, W) gradients scattered back to the source.");
  m.def(
      "warp_window",
      [](const py::handle& x, const py::handle& theta, std::pair<std::int64_t, std::int64_t> plane,
         const py::handle& pre, const py::handle& post,
         std::pair<std::int64_t, std::int64_t> out_size, float fill) {
        return run_window(x, theta, plane, pre, post, out_size, fill, false);
      },
      py::arg("x"), py::arg("theta"), py::arg("plane"), py::arg("pre"), py::arg("post"),
      py::arg("out_size"), py::arg("fill"),
      "Pads/crops, an affine warp and a crop in one pass: float32 (N, C, H, W) -> (N, C, *out_size). "
      "Plane pixel t of image i shows x[i] at t + pre[i] (fill off the source); the plane is "
      "warped about its centre by theta[i] (zero off the plane); out = the warped plane at "
      "offset post[i].");
  m.def(
      "warp_window_adjoint",
      [](const py::handle& g, const py::handle& theta, std::pair<std::int64_t, std::int64_t> plane,
         const py::handle& pre, const py::handle& post,
         std::pair<std::int64_t, std::int64_t> size, float fill) {
        return run_window(g, theta, plane, pre, post, size, fill, true);
      },
      py::arg("g"), py::arg("theta"), py::arg("plane"), py::arg("pre"), py::arg("post"),
      py::arg("size"), py::arg("fill"),
      "The transpose of warp_window: float32 gradients (N, C, *out_size) -> (N, C, *size), size "
      "being the source's (H, W); the fill gets no gradient.");
  m.def("flush_denormals", &flush_denormals, py::arg("on"),
        "Set (True) or clear (False) flush-to-zero and denormals-are-zero on the calling thread; "
        "returns whether both were set before. A no-op returning False off x86.");
  m.attr("HAS_DENORMAL_CONTROL") =
#ifdef ONNXLENS_HAS_MXCSR
      true;
#else
      false;
#endif
}
