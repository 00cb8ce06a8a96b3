#include <pybind11/pybind11.h>
namespace py = pybind11;
void bind_render(py::module_& m) { (void)m; }
