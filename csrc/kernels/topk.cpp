#include "kernels/topk.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "kernels/parallel.hpp"

namespace onnxlens {
namespace {

constexpr char k_magic[8] = {'O', 'L', 'T', 'O', 'P', 'K', '\0', '\0'};
constexpr std::uint32_t k_version = 1;
constexpr std::uint32_t k_bom = 0x01020304u;
constexpr std::int64_t k_max_elems = std::int64_t{1} << 40;

std::uint64_t fnv1a(const char* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

template <class T>
void put(std::string& s, const T* v, std::size_t count) {
  s.append(reinterpret_cast<const char*>(v), sizeof(T) * count);
}

struct Reader {
  const char* p;
  std::size_t left;
  template <class T>
  void get(T* v, std::size_t count) {
    const std::size_t n = sizeof(T) * count;
    if (n > left) throw std::invalid_argument("TopK.deserialise: data truncated");
    std::memcpy(v, p, n);
    p += n;
    left -= n;
  }
};

void check_shape(std::int64_t channels, std::int64_t k, std::int64_t payload) {
  if (channels <= 0 || k <= 0 || payload < 0)
    throw std::invalid_argument("TopK needs channels >= 1, k >= 1 and payload_size >= 0");
  if (channels > k_max_elems / k || channels * k > k_max_elems / std::max<std::int64_t>(1, payload))
    throw std::invalid_argument("TopK: channels * k * payload_size is too large");
}

}  // namespace

TopK::TopK(std::int64_t channels, std::int64_t k, std::int64_t payload_size)
    : c_(channels), k_(k), p_(payload_size) {
  check_shape(channels, k, payload_size);
  vals_.assign(c_ * k_, std::numeric_limits<float>::quiet_NaN());
  ids_.assign(c_ * k_, -1);
  pay_.assign(c_ * k_ * p_, -1);
  count_.assign(c_, 0);
  gate_.assign(c_, -std::numeric_limits<float>::infinity());
}

bool TopK::before(std::int64_t c, std::int64_t j, float v, std::int64_t id,
                  const std::int32_t* pl) const {
  const std::int64_t s = c * k_ + j;
  if (v != vals_[s]) return v > vals_[s];
  if (id != ids_[s]) return id < ids_[s];
  const std::int32_t* q = pay_.data() + s * p_;
  for (std::int64_t i = 0; i < p_; ++i)
    if (pl[i] != q[i]) return pl[i] < q[i];
  return false;  // identical entries keep their order; either way the state is the same
}

void TopK::offer(std::int64_t c, float v, std::int64_t id, const std::int32_t* pl) {
  std::int64_t& n = count_[c];
  if (n == k_ && !before(c, k_ - 1, v, id, pl)) return;
  // Insertion position: first slot the candidate goes before (k is small: linear from the end).
  std::int64_t pos = n < k_ ? n : k_ - 1;
  while (pos > 0 && before(c, pos - 1, v, id, pl)) --pos;
  const std::int64_t last = n < k_ ? n : k_ - 1;  // slot that becomes occupied / is dropped
  const std::int64_t base = c * k_;
  for (std::int64_t j = last; j > pos; --j) {
    vals_[base + j] = vals_[base + j - 1];
    ids_[base + j] = ids_[base + j - 1];
    if (p_) std::memcpy(&pay_[(base + j) * p_], &pay_[(base + j - 1) * p_], sizeof(std::int32_t) * p_);
  }
  vals_[base + pos] = v;
  ids_[base + pos] = id;
  if (p_) std::memcpy(&pay_[(base + pos) * p_], pl, sizeof(std::int32_t) * p_);
  if (n < k_) ++n;
  if (n == k_) gate_[c] = vals_[base + k_ - 1];
}

void TopK::update(const float* values, const std::int64_t* ids, const std::int32_t* payload,
                  std::int64_t n) {
  if (p_ > 0 && payload == nullptr)
    throw std::invalid_argument("TopK.update: this state keeps a payload; pass payload");
  static const std::int32_t no_payload[1] = {0};
  // Channels are independent: each thread owns a contiguous channel range and reads its slice of
  // every row, so there is no sharing and no locking.
  const bool parallel = n * c_ >= (1 << 15) && c_ > 1;
  parallel_chunks(c_, parallel, [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = values + i * c_;
      const std::int64_t id = ids[i];
      for (std::int64_t c = cb; c < ce; ++c) {
        const float v = row[c];
        // !(v >= gate) also drops NaN.
        if (!(v >= gate_[c])) continue;
        offer(c, v, id, p_ ? payload + (i * c_ + c) * p_ : no_payload);
      }
    }
  });
}

void TopK::merge(const TopK& other) {
  if (other.c_ != c_ || other.k_ != k_ || other.p_ != p_)
    throw std::invalid_argument("TopK.merge: states differ in (channels, k, payload_size): (" +
                                std::to_string(c_) + ", " + std::to_string(k_) + ", " +
                                std::to_string(p_) + ") vs (" + std::to_string(other.c_) + ", " +
                                std::to_string(other.k_) + ", " + std::to_string(other.p_) + ")");
  if (&other == this) {
    const TopK copy = other;
    merge(copy);
    return;
  }
  static const std::int32_t no_payload[1] = {0};
  parallel_chunks(c_, c_ * k_ >= (1 << 14), [&](std::int64_t cb, std::int64_t ce) {
    for (std::int64_t c = cb; c < ce; ++c)
      for (std::int64_t j = 0; j < other.count_[c]; ++j) {
        const std::int64_t s = c * k_ + j;
        if (!(other.vals_[s] >= gate_[c])) break;  // other's channel is sorted: the rest lose too
        offer(c, other.vals_[s], other.ids_[s], p_ ? other.pay_.data() + s * p_ : no_payload);
      }
  });
}

std::string TopK::serialise() const {
  std::string s;
  s.reserve(64 + count_.size() * 8 + vals_.size() * 12 + pay_.size() * 4);
  s.append(k_magic, sizeof(k_magic));
  put(s, &k_version, 1);
  put(s, &k_bom, 1);
  const std::int64_t shape[3] = {c_, k_, p_};
  put(s, shape, 3);
  put(s, count_.data(), count_.size());
  put(s, vals_.data(), vals_.size());
  put(s, ids_.data(), ids_.size());
  put(s, pay_.data(), pay_.size());
  const std::uint64_t h = fnv1a(s.data(), s.size());
  put(s, &h, 1);
  return s;
}

TopK TopK::deserialise(const char* data, std::size_t size) {
  const std::string what = "TopK.deserialise: ";
  Reader r{data, size};
  char magic[8];
  if (size < sizeof(magic)) throw std::invalid_argument(what + "data truncated (" + std::to_string(size) + " bytes)");
  r.get(magic, 8);
  if (std::memcmp(magic, k_magic, 8) != 0)
    throw std::invalid_argument(what + "bad magic: these bytes are not a serialised TopK state");
  std::uint32_t version = 0, bom = 0;
  r.get(&version, 1);
  if (version != k_version)
    throw std::invalid_argument(what + "unsupported format version " + std::to_string(version) +
                                " (this build reads version " + std::to_string(k_version) + ")");
  r.get(&bom, 1);
  if (bom != k_bom) throw std::invalid_argument(what + "byte order differs from this machine's");
  std::int64_t shape[3];
  r.get(shape, 3);
  try {
    check_shape(shape[0], shape[1], shape[2]);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(what + "corrupt header: " + e.what());
  }
  const std::int64_t C = shape[0], k = shape[1], P = shape[2];
  const std::size_t expected = 8 + 4 + 4 + 24 + 8 * C + (4 + 8) * C * k + 4 * C * k * P + 8;
  if (size != expected)
    throw std::invalid_argument(what + "size " + std::to_string(size) + " bytes does not match the header (C=" +
                                std::to_string(C) + ", k=" + std::to_string(k) + ", P=" + std::to_string(P) +
                                " needs " + std::to_string(expected) + "); the data is truncated or corrupt");
  std::uint64_t stored = 0;
  std::memcpy(&stored, data + size - 8, 8);
  if (stored != fnv1a(data, size - 8))
    throw std::invalid_argument(what + "checksum mismatch: the data is corrupt");
  TopK t(C, k, P);
  r.get(t.count_.data(), t.count_.size());
  r.get(t.vals_.data(), t.vals_.size());
  r.get(t.ids_.data(), t.ids_.size());
  r.get(t.pay_.data(), t.pay_.size());
  for (std::int64_t c = 0; c < C; ++c) {
    const std::int64_t n = t.count_[c];
    if (n < 0 || n > k) throw std::invalid_argument(what + "corrupt count for channel " + std::to_string(c));
    for (std::int64_t j = 0; j < n; ++j) {
      const std::int64_t s = c * k + j;
      if (std::isnan(t.vals_[s])) throw std::invalid_argument(what + "NaN entry in channel " + std::to_string(c));
      if (j > 0 && t.before(c, j - 1, t.vals_[s], t.ids_[s], t.pay_.data() + s * P))
        throw std::invalid_argument(what + "channel " + std::to_string(c) + " is not in top-k order");
    }
    t.gate_[c] = n == k ? t.vals_[c * k + k - 1] : -std::numeric_limits<float>::infinity();
  }
  return t;
}

}  // namespace onnxlens
