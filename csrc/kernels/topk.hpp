// Per-channel streaming top-k for dataset mining.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace onnxlens {

// Keeps, for each of C channels, the k best (value, id[, payload]) entries seen so far, ordered by
// value descending, then id ascending, then payload lexicographically ascending. That order is
// total, so the state after any sequence of updates/merges depends only on the multiset of entries
// seen, never on batch sizes or order. NaN values are ignored. Slots not yet filled hold
// value NaN, id -1 and payload -1.
class TopK {
 public:
  TopK(std::int64_t channels, std::int64_t k, std::int64_t payload_size = 0);

  // values (n, C), ids (n,), payload (n, C, P) or nullptr when payload_size == 0.
  void update(const float* values, const std::int64_t* ids, const std::int32_t* payload,
              std::int64_t n);
  // Exact: the result equals having fed `other`'s entries to this state.
  void merge(const TopK& other);

  // Format v1 (little-endian): "OLTOPK\0\0", u32 version, u32 0x01020304 byte-order mark,
  // i64 C, k, P, i64 counts[C], f32 values[C*k], i64 ids[C*k], i32 payload[C*k*P],
  // u64 FNV-1a of all preceding bytes.
  std::string serialise() const;
  // Validates everything above (and the per-channel order); throws std::invalid_argument.
  static TopK deserialise(const char* data, std::size_t size);

  std::int64_t channels() const { return c_; }
  std::int64_t k() const { return k_; }
  std::int64_t payload_size() const { return p_; }
  const std::vector<float>& values() const { return vals_; }
  const std::vector<std::int64_t>& ids() const { return ids_; }
  const std::vector<std::int32_t>& payload() const { return pay_; }
  const std::vector<std::int64_t>& counts() const { return count_; }

 private:
  // Candidate goes before slot j of channel c.
  bool before(std::int64_t c, std::int64_t j, float v, std::int64_t id,
              const std::int32_t* pl) const;
  void offer(std::int64_t c, float v, std::int64_t id, const std::int32_t* pl);

  std::int64_t c_, k_, p_;
  std::vector<float> vals_;
  std::vector<std::int64_t> ids_;
  std::vector<std::int32_t> pay_;
  std::vector<std::int64_t> count_;
  // Gate: the k-th value once a channel is full, -inf before. A candidate below it is dropped
  // with one compare, which is what most updates do once the stream has warmed up.
  std::vector<float> gate_;
};

}  // namespace onnxlens
