// Streaming per-channel top-k state (kernels/topk.hpp) for dataset mining.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>
#include <string>

#include "bind_common.hpp"
#include "kernels/topk.hpp"

namespace py = pybind11;
using onnxlens::TopK;
using onnxlens::bind::checked;
using onnxlens::bind::shape_str;

namespace {

// The GIL is released during update/merge, so the state carries its own lock: two Python threads
// feeding one state serialise instead of racing.
struct PyTopK {
  explicit PyTopK(TopK t) : state(std::move(t)) {}
  TopK state;
  std::mutex mu;
};

template <class T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
  py::array_t<T> out(shape);
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

void update(PyTopK& self, const py::handle& values_obj, const py::handle& ids_obj,
            const py::object& payload_obj) {
  const std::int64_t C = self.state.channels(), P = self.state.payload_size();
  auto values = checked<float>(values_obj, "values", 2, "(N, C)");
  auto ids = checked<std::int64_t>(ids_obj, "ids", 1, "(N,)");
  if (values.shape(1) != C)
    throw py::value_error("values: expected shape (N, " + std::to_string(C) + ") for this TopK, got " +
                          shape_str(values));
  if (ids.shape(0) != values.shape(0))
    throw py::value_error("ids: expected shape (" + std::to_string(values.shape(0)) +
                          ",) to match values, got " + shape_str(ids));
  const std::int32_t* pl = nullptr;
  py::array_t<std::int32_t> payload;
  if (!payload_obj.is_none()) {
    if (P == 0)
      throw py::value_error("payload given but this TopK was created with payload_size=0; "
                            "create it with TopK(channels, k, payload_size=P)");
    payload = checked<std::int32_t>(payload_obj, "payload", 3, "(N, C, P)");
    if (payload.shape(0) != values.shape(0) || payload.shape(1) != C || payload.shape(2) != P)
      throw py::value_error("payload: expected shape (" + std::to_string(values.shape(0)) + ", " +
                            std::to_string(C) + ", " + std::to_string(P) + "), got " + shape_str(payload));
    pl = payload.data();
  } else if (P > 0) {
    throw py::value_error("this TopK keeps a payload of size " + std::to_string(P) +
                          " per entry; pass payload=int32 array of shape (N, C, P)");
  }
  const float* v = values.data();
  const std::int64_t* id = ids.data();
  const std::int64_t n = values.shape(0);
  py::gil_scoped_release nogil;
  std::lock_guard<std::mutex> lock(self.mu);
  self.state.update(v, id, pl, n);
}

void merge(PyTopK& self, PyTopK& other) {
  py::gil_scoped_release nogil;
  if (&self == &other) {
    std::lock_guard<std::mutex> lock(self.mu);
    self.state.merge(TopK(self.state));
    return;
  }
  std::scoped_lock lock(self.mu, other.mu);
  self.state.merge(other.state);
}

py::bytes serialise(PyTopK& self) {
  std::string s;
  {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(self.mu);
    s = self.state.serialise();
  }
  return py::bytes(s);
}

std::unique_ptr<PyTopK> deserialise(const py::bytes& data) {
  const std::string s = data;
  return std::make_unique<PyTopK>(TopK::deserialise(s.data(), s.size()));
}

}  // namespace

void bind_topk(py::module_& m) {
  py::class_<PyTopK>(m, "TopK",
                     "Per-channel streaming top-k: for each of `channels` channels the k largest "
                     "values with their int64 ids (and an optional int32 payload of payload_size "
                     "per entry), ordered by value descending, then id ascending, then payload. "
                     "NaN values are ignored; unfilled slots hold NaN / -1.")
      .def(py::init([](std::int64_t channels, std::int64_t k, std::int64_t payload_size) {
             return std::make_unique<PyTopK>(TopK(channels, k, payload_size));
           }),
           py::arg("channels"), py::arg("k"), py::arg("payload_size") = 0)
      .def("update", &update, py::arg("values"), py::arg("ids"), py::arg("payload") = py::none(),
           "Add a batch: values float32 (N, C), ids int64 (N,), payload int32 (N, C, P) or None.")
      .def("merge", &merge, py::arg("other"), "Exact merge of another state of the same shape.")
      .def("serialise", &serialise, "Versioned, checksummed bytes (see TopK.deserialise).")
      .def_static("deserialise", &deserialise, py::arg("data"),
                  "Rebuild a state from TopK.serialise() bytes; ValueError if they are not valid.")
      .def("values", [](PyTopK& s) {
        std::lock_guard<std::mutex> lock(s.mu);
        return to_array(s.state.values(), {s.state.channels(), s.state.k()});
      })
      .def("ids", [](PyTopK& s) {
        std::lock_guard<std::mutex> lock(s.mu);
        return to_array(s.state.ids(), {s.state.channels(), s.state.k()});
      })
      .def("payload", [](PyTopK& s) {
        std::lock_guard<std::mutex> lock(s.mu);
        return to_array(s.state.payload(), {s.state.channels(), s.state.k(), s.state.payload_size()});
      })
      .def("counts", [](PyTopK& s) {
        std::lock_guard<std::mutex> lock(s.mu);
        return to_array(s.state.counts(), {s.state.channels()});
      })
      .def_property_readonly("channels", [](const PyTopK& s) { return s.state.channels(); })
      .def_property_readonly("k", [](const PyTopK& s) { return s.state.k(); })
      .def_property_readonly("payload_size", [](const PyTopK& s) { return s.state.payload_size(); })
      .def("__repr__", [](const PyTopK& s) {
        return "TopK(channels=" + std::to_string(s.state.channels()) + ", k=" + std::to_string(s.state.k()) +
               ", payload_size=" + std::to_string(s.state.payload_size()) + ")";
      })
      .def(py::pickle([](PyTopK& s) { return serialise(s); },
                      [](const py::bytes& b) { return deserialise(b); }));
}
