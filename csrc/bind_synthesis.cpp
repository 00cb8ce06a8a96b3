// Synthesis kernels: the per-step image work of gradient ascent (warps and their adjoints).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

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
}
