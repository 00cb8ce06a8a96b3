// Strict argument checks shared by the bind_*.cpp shims: the right dtype, C-contiguous, aligned,
// the right rank -- or a TypeError/ValueError that says what was expected and what came. Never a
// silent cast (DESIGN.md convention 3); the Python wrappers convert user-facing input first.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace onnxlens::bind {

namespace py = pybind11;

template <class T>
const char* dtype_name();
template <>
inline const char* dtype_name<float>() { return "float32"; }
template <>
inline const char* dtype_name<double>() { return "float64"; }
template <>
inline const char* dtype_name<std::uint8_t>() { return "uint8"; }
template <>
inline const char* dtype_name<std::int64_t>() { return "int64"; }
template <>
inline const char* dtype_name<std::int32_t>() { return "int32"; }

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

// `ndim` < 0 accepts any rank.
template <class T>
py::array_t<T> checked(const py::handle& obj, const char* arg, int ndim, const char* shape) {
  const std::string expected = std::string(arg) + ": expected " + dtype_name<T>() +
                               " C-contiguous array of shape " + shape + ", got ";
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(expected + std::string(py::str(py::type::of(obj).attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(expected + std::string(py::str(a.dtype())) + " array of shape " + shape_str(a));
  if (ndim >= 0 && a.ndim() != ndim)
    throw py::value_error(expected + std::string(dtype_name<T>()) + " array of shape " + shape_str(a));
  const int flags = py::detail::array_proxy(a.ptr())->flags;
  if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) ||
      !(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(expected + "a non-contiguous " + dtype_name<T>() + " array of shape " +
                          shape_str(a) + " (pass np.ascontiguousarray(...))");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

}  // namespace onnxlens::bind
