#include "esp_learner.h"

#include <algorithm>
#include <limits>

namespace pathsentry::probe {
namespace {

constexpr std::size_t kMaxSizes = 128;
constexpr std::uint32_t kMinWindows = 8;  // windows of a size before it is judged
constexpr std::uint64_t kAgeWindows = 4096;
constexpr std::size_t kMaxLen = 65536;
// A size's windows that must hold the predicted length, and the share of the predicted packet
// count that must have been seen. Windows of other transforms' lengths are far below.
constexpr double kFit = 0.85;
// More packets of a length than this many times the probes predicting it: other traffic's.
constexpr double kBackgroundExcess = 1.5;

const std::vector<EspModel>& presets() {
  static const std::vector<EspModel> all = [] {
    std::vector<EspModel> v;
    for (const char* n : {"aes-cbc-sha256", "aes-cbc-sha1", "aes-cbc-sha384", "aes-cbc-sha512",
                          "aes-gcm-16", "aes-gcm-12", "aes-gcm-8", "null-sha256"}) {
      v.push_back({*EspTransform::preset(n), n});
    }
    return v;
  }();
  return all;
}

}  // namespace

std::size_t CountTable::find_slot(std::uint32_t key) const {
  std::size_t i = home(key);
  while (index_[i] != 0 && keys_[index_[i] - 1u] != key) i = (i + 1) & (kSlots - 1);
  return i;
}

void CountTable::add(std::uint32_t key) {
  const std::size_t slot = find_slot(key);
  if (index_[slot] != 0) {
    ++vals_[index_[slot] - 1u];
    return;
  }
  if (n_ == kCap) return;  // full: new lengths are not tracked until aging frees a place
  keys_[n_] = key;
  vals_[n_] = 1;
  ++n_;
  index_[slot] = static_cast<std::uint8_t>(n_);
}

std::uint32_t CountTable::get(std::uint32_t key) const {
  const std::size_t slot = find_slot(key);
  return index_[slot] == 0 ? 0 : vals_[index_[slot] - 1u];
}

void CountTable::halve() {
  std::size_t out = 0;
  for (std::size_t i = 0; i < n_; ++i) {
    const std::uint32_t v = vals_[i] / 2;
    if (v == 0) continue;
    keys_[out] = keys_[i];
    vals_[out] = v;
    ++out;
  }
  n_ = out;
  rebuild_index();
}

void CountTable::rebuild_index() {
  index_.fill(0);
  for (std::size_t i = 0; i < n_; ++i)
    index_[find_slot(keys_[i])] = static_cast<std::uint8_t>(i + 1);
}

EspLearner::EspLearner() : seen_(kMaxLen, 0) {
  sizes_.reserve(kMaxSizes);
}

void EspLearner::on_packet(std::uint32_t len) {
  if (len < kMaxLen) ++seen_[len];
}

EspLearner::Size* EspLearner::size_of(std::uint32_t wire) {
  const auto it =
      std::find_if(sizes_.begin(), sizes_.end(), [&](const Size& s) { return s.wire == wire; });
  if (it != sizes_.end()) return &*it;
  if (sizes_.size() == kMaxSizes) return nullptr;
  sizes_.push_back(Size{wire, 0, 0, {}});
  return &sizes_.back();
}

void EspLearner::counted() {
  ++since_eval_;
  if (++windows_ >= kAgeWindows) age();
}

std::uint32_t EspLearner::max_stride() const {
  // Between two agings a size gets kAgeWindows / sizes windows; learned one in `stride`, it
  // must keep kMinWindows learned (twice that, as aging halves it) to stay judged.
  const std::size_t n = std::max<std::size_t>(sizes_.size(), 1);
  return static_cast<std::uint32_t>(
      std::max<std::uint64_t>(1, kAgeWindows / (2 * kMinWindows * n)));
}

void EspLearner::on_window(std::uint32_t wire, const std::uint32_t* lens, std::size_t n) {
  if (wire == 0 || n == 0) return;
  Size* s = size_of(wire);
  if (s == nullptr) return;
  ++s->windows;
  ++s->learned;
  for (std::size_t i = 0; i < n; ++i) s->hits.add(lens[i]);
  counted();
}

void EspLearner::on_window_skipped(std::uint32_t wire) {
  if (wire == 0) return;
  Size* s = size_of(wire);
  if (s == nullptr) return;
  ++s->windows;
  counted();
}

void EspLearner::age() {
  windows_ /= 2;
  for (auto& s : sizes_) {
    s.windows /= 2;
    s.learned /= 2;
    s.hits.halve();
  }
  std::erase_if(sizes_, [](const Size& s) { return s.learned == 0; });
  for (auto& c : seen_) c /= 2;
}

bool EspLearner::fits(const EspTransform& t, const std::vector<const Size*>& use,
                      const std::vector<const Size*>& counted) const {
  // Windows: nearly every window of each size holds the predicted length.
  for (const Size* s : use) {
    if (s->hits.get(t.esp_length(s->wire)) < kFit * s->learned) return false;
  }
  // Counts: as many packets of each predicted length as windows predict it, for every size
  // with enough windows, learned or not (thinning may leave a size of the cycle's ends too few
  // learned windows to be judged by the first test; its count still tells a transform from one
  // predicting each size's predecessor's length).
  for (std::size_t i = 0; i < counted.size(); ++i) {
    const std::uint32_t len = t.esp_length(counted[i]->wire);
    bool first = true;
    double want = 0;
    for (std::size_t j = 0; j < counted.size(); ++j) {
      if (t.esp_length(counted[j]->wire) != len) continue;
      if (j < i) first = false;
      want += counted[j]->windows;
    }
    if (!first) continue;
    if (len >= kMaxLen || seen_[len] < kFit * want) return false;
  }
  return true;
}

std::optional<std::size_t> EspLearner::specific_group(
    const std::vector<std::vector<std::uint32_t>>& groups,
    const std::vector<const Size*>& use) const {
  // A length is background, other traffic's rather than the probes', when far more packets of
  // it were seen than the windows predicting it explain (one packet a probe). (The share of
  // windows holding it says nothing when a window spans the whole cycle: then every probe
  // length is in nearly every window.)
  auto background = [&](std::uint32_t len, double want) {
    return len >= kMaxLen || static_cast<double>(seen_[len]) > kBackgroundExcess * want;
  };
  std::vector<std::size_t> score(groups.size(), 0);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    std::vector<std::uint32_t> lens = groups[g];
    std::sort(lens.begin(), lens.end());
    lens.erase(std::unique(lens.begin(), lens.end()), lens.end());
    for (const std::uint32_t len : lens) {
      double want = 0;
      for (std::size_t k = 0; k < use.size(); ++k) {
        if (groups[g][k] == len) want += use[k]->windows;
      }
      score[g] += background(len, want) ? 1 : 0;
    }
  }
  const auto best = std::min_element(score.begin(), score.end());
  if (std::count(score.begin(), score.end(), *best) != 1) return std::nullopt;
  return static_cast<std::size_t>(best - score.begin());
}

std::optional<EspModel> EspLearner::candidate(const EspModel& base,
                                              const std::vector<const Size*>& use) const {
  const EspTransform& t = base.transform;
  auto ratio = [](const Size* s, std::uint32_t len) {
    return static_cast<double>(s->hits.get(len)) / static_cast<double>(s->learned);
  };
  std::size_t collapsed = 0;  // the smallest sizes that do not fit without TFC padding
  for (std::size_t k = 0; k < use.size(); ++k) {
    if (ratio(use[k], t.esp_length(use[k]->wire)) < kFit) collapsed = k + 1;
  }
  if (collapsed == 0) return base;
  // TFC padding: every size below the pad has the pad's length, one length of this transform
  // between the largest padded size's and the smallest unpadded size's.
  const std::uint32_t lo = t.esp_length(use[collapsed - 1]->wire);
  const std::uint32_t hi = collapsed < use.size() ? t.esp_length(use[collapsed]->wire)
                                                  : std::numeric_limits<std::uint32_t>::max();
  const std::uint32_t align = std::max<std::uint32_t>(t.block_bytes, 4);
  const std::uint32_t first = t.esp_length(use[0]->wire);
  std::uint32_t best = 0;
  double best_min = 0;
  const CountTable& h = use[0]->hits;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const std::uint32_t len = h.key_at(i);
    if (len < lo || len > hi || (len - first) % align != 0) continue;
    double mn = 1;
    for (std::size_t k = 0; k < collapsed; ++k) mn = std::min(mn, ratio(use[k], len));
    if (mn >= kFit && mn > best_min) {
      best = len;
      best_min = mn;
    }
  }
  if (best == 0) return std::nullopt;
  const std::uint32_t x = best - 8 - t.iv_bytes - t.icv_bytes;  // the padded inner length
  EspModel m = base;
  m.transform.tfc_pad_to = x > align + 1 ? x - align - 1 : 0;
  m.name = base.name + " + TFC padding to " + std::to_string(m.transform.tfc_pad_to);
  return m;
}

EspLearner::Change EspLearner::evaluate() {
  since_eval_ = 0;
  std::vector<const Size*> use;      // judged by the windows' lengths and the counts
  std::vector<const Size*> counted;  // judged by the counts
  std::uint64_t total = 0, judged = 0;
  for (const Size& s : sizes_) {
    total += s.windows;
    if (s.windows >= kMinWindows) counted.push_back(&s);
    if (s.learned >= kMinWindows) {
      use.push_back(&s);
      judged += s.windows;
    }
  }
  std::sort(use.begin(), use.end(), [](const Size* a, const Size* b) { return a->wire < b->wire; });
  last_sizes_ = use.size();
  if (use.empty()) return Change::None;
  min_wire_ = use.front()->wire;
  max_wire_ = use.back()->wire;
  min_len_ = std::numeric_limits<std::uint32_t>::max();
  max_len_ = 0;
  for (const Size* s : use) {
    for (std::size_t i = 0; i < s->hits.size(); ++i) {
      if (s->hits.get(s->hits.key_at(i)) < kFit * s->learned) continue;
      min_len_ = std::min(min_len_, s->hits.key_at(i));
      max_len_ = std::max(max_len_, s->hits.key_at(i));
    }
  }
  // Lengths held by nearly every window whatever its size (one = TFC padding over them all).
  last_distinct_lengths_ = 0;
  for (std::size_t i = 0; i < use[0]->hits.size(); ++i) {
    const std::uint32_t len = use[0]->hits.key_at(i);
    bool all = true;
    for (const Size* s : use) all = all && s->hits.get(len) >= kFit * s->learned;
    if (all) ++last_distinct_lengths_;
  }
  // Judge (lock, test the locked one, replace it) only when nearly every window belongs to a
  // judged size (the whole cycle has been seen): the sizes at its ends are what tell
  // neighbouring transforms apart. (Without the smallest size, a transform predicting each
  // size's predecessor's length fits a cycle whose ESP came late in a stall.)
  if (judged < 0.95 * static_cast<double>(total)) return Change::None;
  locked_fits_ = model_ && fits(model_->transform, use, counted);
  std::vector<EspModel> fitting;
  std::vector<std::vector<std::uint32_t>> groups;
  last_group_names_.clear();
  for (const EspModel& base : presets()) {
    auto m = candidate(base, use);
    if (!m || !fits(m->transform, use, counted)) continue;
    std::vector<std::uint32_t> pred;
    pred.reserve(use.size());
    for (const Size* s : use) pred.push_back(m->transform.esp_length(s->wire));
    const auto g = std::find(groups.begin(), groups.end(), pred);
    if (g == groups.end()) {
      groups.push_back(std::move(pred));
      fitting.push_back(*m);
      last_group_names_ += (last_group_names_.empty() ? "" : ", ") + m->name;
    } else if (auto& rep = fitting[static_cast<std::size_t>(g - groups.begin())];
               rep.transform.tfc_pad_to != 0 && m->transform.tfc_pad_to == 0) {
      rep = *m;  // the same lengths without TFC padding: the simpler explanation
    }
  }
  last_groups_ = groups.size();
  std::optional<std::size_t> pick;
  if (groups.size() == 1) {
    pick = 0;
  } else if (groups.size() > 1) {
    pick = specific_group(groups, use);
  }
  if (!pick) {
    // The whole cycle's evidence contradicts the locked transform and names no other (yet):
    // forget faster, so that after a rekey the new lengths' share reaches kFit in ~1 s instead
    // of the ~4 s the regular halving every kAgeWindows takes.
    if (model_ && !locked_fits_) age();
    return Change::None;
  }
  if (!model_) {
    model_ = fitting[*pick];
    locked_fits_ = true;
    return Change::Learned;
  }
  if (locked_fits_) return Change::None;
  model_ = fitting[*pick];
  locked_fits_ = true;
  return Change::Relearned;
}

bool EspLearner::agrees_with(const EspTransform& t) const {
  if (!model_) return true;
  for (const Size& s : sizes_) {
    if (s.windows >= kMinWindows && model_->transform.esp_length(s.wire) != t.esp_length(s.wire)) {
      return false;
    }
  }
  return true;
}

std::string EspLearner::diagnosis() const {
  const std::string sizes =
      "probe sizes " + std::to_string(min_wire_) + ".." + std::to_string(max_wire_) + " bytes";
  if (model_) {
    if (!locked_fits_) {
      return "the learned transform " + model_->name + " no longer fits the ESP lengths seen (" +
             sizes + ", ESP lengths in their windows " + std::to_string(min_len_) + ".." +
             std::to_string(max_len_) + ")";
    }
    return "transform " + model_->name;
  }
  if (last_sizes_ == 0) return "no probe window has held enough ESP packets to learn from yet";
  if (last_groups_ > 1) {
    return "several candidate transforms fit the ESP lengths seen (" + last_group_names_ +
           "): none locked";
  }
  if (last_distinct_lengths_ == 1 && last_sizes_ > 1) {
    return "every window holds ESP of one length whatever the probe size (" + sizes +
           "): TFC padding hides the sizes";
  }
  return "no candidate transform fits the ESP lengths seen (" + sizes +
         (max_len_ != 0 ? ", ESP lengths in nearly all their windows " + std::to_string(min_len_) +
                              ".." + std::to_string(max_len_)
                        : std::string(", no ESP length in nearly all their windows")) +
         ")";
}

}  // namespace pathsentry::probe
