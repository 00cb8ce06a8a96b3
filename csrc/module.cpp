// The private extension onnxlens._core: one bind_<topic>(m) per topic.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_render(py::module_& m);
void bind_topk(py::module_& m);
void bind_synthesis(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "onnxlens private C++ kernels (resize, colormaps, overlays, grids, top-k, synthesis warps).";
#ifdef ONNXLENS_OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  bind_render(m);
  bind_topk(m);
  bind_synthesis(m);
}
