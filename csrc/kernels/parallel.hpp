// OpenMP helpers shared by the kernels. Exceptions must not escape an OpenMP region (that is
// std::terminate), so workers catch, the first error is kept, and it is rethrown on the calling
// thread once the region has joined.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>

#ifdef ONNXLENS_OPENMP
#include <omp.h>
#endif

namespace onnxlens {

inline int max_threads() {
#ifdef ONNXLENS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

class ErrorSlot {
 public:
  void capture() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!err_) err_ = std::current_exception();
    failed_.store(true, std::memory_order_relaxed);
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void rethrow() {
    if (err_) std::rethrow_exception(err_);
  }

 private:
  std::mutex mu_;
  std::exception_ptr err_;
  std::atomic<bool> failed_{false};
};

// Runs f(i) for i in [0, n), in parallel when `parallel` is true and n > 1.
template <class F>
void parallel_for(std::int64_t n, bool parallel, F&& f) {
  ErrorSlot errors;
#ifdef ONNXLENS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (parallel && n > 1)
#endif
  for (std::int64_t i = 0; i < n; ++i) {
    if (errors.failed()) continue;
    try {
      f(i);
    } catch (...) {
      errors.capture();
    }
  }
  errors.rethrow();
}

// Static row split: f(begin, end) over [0, n) in `chunks` contiguous pieces.
template <class F>
void parallel_chunks(std::int64_t n, bool parallel, F&& f) {
  const std::int64_t chunks = parallel ? std::max<std::int64_t>(1, std::min<std::int64_t>(n, max_threads())) : 1;
  parallel_for(chunks, parallel, [&](std::int64_t c) {
    const std::int64_t begin = n * c / chunks;
    const std::int64_t end = n * (c + 1) / chunks;
    if (begin < end) f(begin, end);
  });
}

}  // namespace onnxlens
