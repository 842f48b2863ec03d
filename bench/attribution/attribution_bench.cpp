// bench-attribution: how fast the sniffer side attributes probes, against a bare libpcap read
// of the same capture files in the same run (architecture §9).
//
//   bench-attribution [--probes N] [--rate PPS] [--sessions S] [--esp-share F] [--repeat R]
//                     [--dir DIR] [--hash]
//
// It writes a recorded capture of a drill — two nanosecond pcap files, one per tap (Express
// Connect: clear probes; IPsec: ESP-in-UDP) — plus the sender's events for the same probes,
// then times over the same files, R times each, best run reported:
//   bare    pcap_next_ex over both files, touching each frame (the floor of any reader)
//   decode  PacketSource + decode_frame for every frame (the tap layer)
//   full    reading + decoding + Attributor (announcements, records, observations, poll every
//           1 ms of capture time) + Detector + every record's JSON: probes/s attributed, the
//           figure that matters; timed twice: all on one thread, then in the agent's shape
//           (each tap read and decoded on a thread of its own, as the agent's capture threads,
//           each poll's records handed to the agent's own RecordQueue and their JSON
//           formatted on its writer thread), which must give the same result and drop no
//           record (else exit 1). --hash adds an FNV-1a of all the records' JSON
//           (to compare builds: it costs time, do not quote those figures)
// The probes: S sessions (half ICMP, half STAMP), round robin at PPS in total; the first
// (1 - F) of the run goes over Express Connect, the rest over IPsec (a switchover mid-run).
// IPsec probes cycle through 32 sizes so that dense probes have distinct ESP lengths.
// Prints one JSON object on stdout (figures, ratios, and how the probes were attributed);
// progress on stderr. Not a test: it asserts nothing about speed.

#include <pcap/pcap.h>
#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "../bench_util.h"
#include "capture/pcap_builder.h"
#include "pathsentry/common/record_json.h"
#include "pathsentry/probe/agent/agent_config.h"
#include "pathsentry/probe/attribution/attributor.h"
#include "pathsentry/probe/attribution/detector.h"
#include "pathsentry/probe/capture/tap.h"
#include "record_queue.h"  // probe/agent/src: the agent's writer hand-off

using namespace pathsentry;
using namespace pathsentry::probe;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000'000'000;
constexpr std::int64_t kUs = 1'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kRtt = 8 * kMs;
constexpr std::int64_t kTimeout = 1'000 * kMs;
constexpr std::uint32_t kAgent = 7;
constexpr std::uint16_t kStampPort = 862;

struct Options {
  std::uint64_t probes = 300'000;
  double rate = 100'000;
  std::uint32_t sessions = 20;
  double esp_share = 0.5;
  int repeat = 3;
  std::string dir;
  bool hash = false;
  bool profile = false;  // only the single-threaded full chain, once: for perf and callgrind
  bool profile_threaded = false;  // --profile-threaded: the agent's shape instead
};

struct SenderEvent {
  std::int64_t at = 0;
  bool record = false;  // false: announcement
  std::size_t index = 0;
};

/// The recorded drill: capture files and what the sender did.
struct Drill {
  std::vector<SessionSpec> sessions;
  std::vector<TapSpec> taps;
  std::vector<ProbeSent> sent;
  std::vector<ProbeRecord> records;
  std::vector<SenderEvent> events;  // sorted by time
  std::string files[2];
  std::uint64_t frames[2] = {0, 0};
};

Drill make_drill(const Options& o, const std::string& dir) {
  Drill d;
  const auto agent = test::addr("172.16.1.188");
  TapSpec ec;
  ec.interface = "tap-ec";
  ec.path = "express-connect";
  TapSpec inet;
  inet.interface = "tap-inet";
  inet.path = "ipsec";
  inet.encap = Encap::Esp;
  inet.local_endpoint = test::addr("203.0.113.68");
  inet.remote_endpoint = test::addr("198.51.100.7");
  inet.transform = EspTransform::preset("aes-gcm-16");
  inet.window_lo_ns = -50 * kUs;
  inet.window_hi_ns = 250 * kUs;
  d.taps = {ec, inet};
  for (std::uint32_t s = 0; s < o.sessions; ++s) {
    SessionSpec spec;
    spec.session_id = s + 1;
    spec.proto = s % 2 == 0 ? Proto::Icmp : Proto::Stamp;
    spec.target = test::addr(("192.168.20." + std::to_string(1 + s / 2)).c_str());
    spec.wire_bytes = spec.proto == Proto::Icmp ? 84 : 72;
    spec.rate_pps = o.rate / o.sessions;
    spec.timeout_ns = kTimeout;
    d.sessions.push_back(spec);
  }
  std::vector<std::pair<std::int64_t, test::Bytes>> frames[2];
  std::vector<std::uint64_t> next_seq(o.sessions, 0);
  std::vector<std::uint32_t> refl(o.sessions, 0);
  std::uint32_t esp_fwd = 1;
  std::uint32_t esp_rev = 1;
  const auto switch_at =
      static_cast<std::uint64_t>(static_cast<double>(o.probes) * (1 - o.esp_share));
  for (std::uint64_t i = 0; i < o.probes; ++i) {
    const std::uint32_t si = static_cast<std::uint32_t>(i % o.sessions);
    const SessionSpec& s = d.sessions[si];
    const std::uint64_t seq = next_seq[si]++;
    const auto tx = kT0 + static_cast<std::int64_t>(static_cast<double>(i) * 1e9 / o.rate);
    const bool esp = i >= switch_at;
    // Over IPsec the agent cycles every probe through 32 sizes (4 bytes apart: distinct
    // AES-GCM lengths), so the ~30 probes inside one window at 100k/s all differ.
    const std::uint32_t wire = esp ? 100 + 4 * static_cast<std::uint32_t>(i % 32) : s.wire_bytes;
    d.sent.push_back({s.session_id, seq, tx, wire});
    const std::int64_t rx = tx + kRtt + static_cast<std::int64_t>(i % 7) * kUs;
    const auto ssid = static_cast<std::uint16_t>(s.session_id);
    if (esp) {
      const auto len = inet.transform->esp_length(wire);
      frames[1].emplace_back(
          tx + 100 * kUs, test::ethernet(test::esp_packet(inet.local_endpoint, inet.remote_endpoint,
                                                          0xC1, esp_fwd++, len, true)));
      frames[1].emplace_back(
          rx - 100 * kUs, test::ethernet(test::esp_packet(inet.remote_endpoint, inet.local_endpoint,
                                                          0xC2, esp_rev++, len, true)));
    } else if (s.proto == Proto::Icmp) {
      frames[0].emplace_back(tx + 30 * kUs,
                             test::ethernet(test::icmp_probe(agent, s.target, true, kAgent,
                                                             s.session_id, seq, tx, wire)));
      frames[0].emplace_back(rx - 30 * kUs,
                             test::ethernet(test::icmp_probe(s.target, agent, false, kAgent,
                                                             s.session_id, seq, tx, wire)));
    } else {
      frames[0].emplace_back(tx + 30 * kUs, test::ethernet(test::stamp_request(
                                                agent, s.target, 40000, kStampPort,
                                                static_cast<std::uint32_t>(seq), ssid, wire)));
      frames[0].emplace_back(rx - 30 * kUs, test::ethernet(test::stamp_reply(
                                                s.target, agent, kStampPort, 40000, refl[si],
                                                static_cast<std::uint32_t>(seq), ssid, wire)));
    }
    ProbeRecord r;
    r.target = s.target.to_string();
    r.proto = s.proto;
    r.session_id = s.session_id;
    r.seq = seq;
    r.tx_ns = tx;
    r.tx_kernel_ts = true;
    r.rx_ns = rx;
    r.rtt_ns = rx - tx;
    if (s.proto == Proto::Stamp) {
      r.reflector_seq = refl[si]++;
      r.reflector_rx_ns = tx + kRtt / 2;
      r.reflector_tx_ns = tx + kRtt / 2 + 5 * kUs;
    }
    d.records.push_back(std::move(r));
    d.events.push_back({tx, false, d.sent.size() - 1});
    d.events.push_back({rx + 20 * kUs, true, d.records.size() - 1});
  }
  std::sort(d.events.begin(), d.events.end(), [](const SenderEvent& a, const SenderEvent& b) {
    return std::tuple{a.at, a.record, a.index} < std::tuple{b.at, b.record, b.index};
  });
  const char* names[2] = {"/tap-ec.pcap", "/tap-inet.pcap"};
  for (int t = 0; t < 2; ++t) {
    std::sort(frames[t].begin(), frames[t].end(), [](const auto& a, const auto& b) {
      return a.first < b.first || (a.first == b.first && a.second < b.second);
    });
    d.files[t] = dir + names[t];
    test::PcapFile f(d.files[t], 1, 256);
    for (const auto& [ts, fr] : frames[t]) f.add(ts, fr);
    f.close();
    d.frames[t] = frames[t].size();
  }
  return d;
}

/// The floor: libpcap reading every frame and touching its bytes.
std::uint64_t bare_read(const Drill& d) {
  std::uint64_t sum = 0;
  for (const auto& path : d.files) {
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p =
        pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    if (p == nullptr) throw std::runtime_error(err);
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    while (pcap_next_ex(p, &h, &data) == 1) sum += h->caplen + data[h->caplen / 2];
    pcap_close(p);
  }
  return sum;
}

struct NullSink final : ObservationSink {
  std::uint64_t n = 0;
  void on_observation(std::size_t, const Observation& o) override { n += o.seq & 1; }
};

std::uint64_t decode_only(const Drill& d) {
  NullSink sink;
  for (std::size_t t = 0; t < 2; ++t) {
    auto src = open_file(d.files[t]);
    if (!src) throw std::runtime_error(src.error());
    Tap tap(d.taps[t], DecodeContext{kAgent, kStampPort}, std::move(*src), t);
    bool end = false;
    while (!end) {
      if (!tap.pump(sink, 4096, &end)) throw std::runtime_error("read error");
    }
  }
  return sink.n;
}

/// One tap's next decoded observation, held for the time merge.
struct Cursor {
  std::unique_ptr<PacketSource> src;
  TapSpec tap;
  std::size_t index = 0;
  bool has = false;
  bool end = false;
  Observation obs;
  void advance() {
    has = false;
    Frame f;
    while (!end) {
      auto st = src->next(f);
      if (!st || *st != ReadStatus::Frame) {
        end = true;
        return;
      }
      auto o = decode_frame(tap, DecodeContext{kAgent, kStampPort}, f.ts_ns, f.linktype, f.bytes);
      if (o) {
        obs = *o;
        has = true;
        return;
      }
    }
  }
};

/// A tap read and decoded on its own thread, as the agent's capture threads do: batches of
/// observations handed to the attribution thread through a short bounded queue (same order).
class ThreadedCursor {
 public:
  ThreadedCursor() = default;
  ThreadedCursor(const ThreadedCursor&) = delete;
  ThreadedCursor& operator=(const ThreadedCursor&) = delete;
  ~ThreadedCursor() {
    {
      const std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void start(const std::string& file, const TapSpec& tap, std::size_t tap_index) {
    index = tap_index;
    thread_ = std::thread([this, file, tap, tap_index] {
      // Named as the agent names its capture threads' stand-ins, for perf --sort comm.
      const std::string name = "tap" + std::to_string(tap_index);
      pthread_setname_np(pthread_self(), name.c_str());
      run(file, tap);
    });
  }
  std::size_t index = 0;
  bool has = false;
  Observation obs;
  void advance() {
    if (pos_ == cur_.size() && !refill()) {
      has = false;
      return;
    }
    obs = cur_[pos_++];
    has = true;
  }

 private:
  static constexpr std::size_t kBatch = 1024;
  static constexpr std::size_t kDepth = 16;
  bool refill() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !q_.empty() || done_; });
    if (q_.empty()) {
      if (!error_.empty()) throw std::runtime_error(error_);
      return false;
    }
    cur_ = std::move(q_.front());
    q_.pop_front();
    pos_ = 0;
    l.unlock();
    cv_.notify_all();
    return true;
  }
  void finish(std::string error) {
    const std::lock_guard<std::mutex> l(m_);
    error_ = std::move(error);
    done_ = true;
    cv_.notify_all();
  }
  void run(const std::string& file, const TapSpec& tap) {
    auto src = open_file(file);
    if (!src) return finish(src.error());
    const DecodeContext ctx{kAgent, kStampPort};
    Frame f;
    bool end = false;
    while (!end) {
      std::vector<Observation> batch;
      batch.reserve(kBatch);
      while (batch.size() < kBatch) {
        auto st = (*src)->next(f);
        if (!st) return finish(st.error());
        if (*st != ReadStatus::Frame) {
          end = true;
          break;
        }
        auto o = decode_frame(tap, ctx, f.ts_ns, f.linktype, f.bytes);
        if (o) batch.push_back(*o);
      }
      std::unique_lock<std::mutex> l(m_);
      cv_.wait(l, [&] { return q_.size() < kDepth || stop_; });
      if (stop_) return;
      if (!batch.empty()) q_.push_back(std::move(batch));
      l.unlock();
      cv_.notify_all();
    }
    finish({});
  }
  std::thread thread_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::vector<Observation>> q_;
  bool done_ = false;
  bool stop_ = false;
  std::string error_;
  std::vector<Observation> cur_;
  std::size_t pos_ = 0;
};

/// FNV-1a of `text`, continued from `h` (start: kFnvBasis): compares two builds' JSON.
constexpr std::uint64_t kFnvBasis = 14695981039346656037ull;
std::uint64_t fnv1a(std::uint64_t h, std::string_view text) {
  for (const char c : text) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

/// The agent's writer thread's output without the write(2): each record's JSON appended to a
/// buffer that is counted (and hashed) and cleared at the agent's flush size (JsonLinesWriter).
class CountingJsonOutput final : public RecordOutput {
 public:
  explicit CountingJsonOutput(bool hash) : hash_(hash) {
    if (hash_) fnv_ = kFnvBasis;
  }
  void write(const ProbeRecord& r) override {
    append_json(r, json_);
    if (json_.size() >= kFlushAt) flush();
  }
  void write(const PathEvent&) override {}  // the chain's events are counted, not written
  void flush() override {
    bytes_ += json_.size();
    if (hash_) fnv_ = fnv1a(fnv_, json_);
    json_.clear();
  }
  [[nodiscard]] std::uint64_t bytes() const { return bytes_; }
  [[nodiscard]] std::uint64_t hash() const { return fnv_; }

 private:
  static constexpr std::size_t kFlushAt = 64 * 1024;
  const bool hash_;
  std::string json_;
  std::uint64_t bytes_ = 0;
  std::uint64_t fnv_ = 0;
};

/// The agent's record hand-off (probe/agent record_queue.h). Its bounds are the agent's for
/// the drill's rate (two seconds of records within agent.record_queue_mb) scaled by how much
/// faster than real time the chain runs here (~20x): at the agent's own bounds the writer,
/// which wakes every 1024 records, fell behind now and then (--hash makes it slower) and the
/// queue dropped records, as a real agent would at 20 times its rate.
struct WriterThread {
  static constexpr std::size_t kFasterThanRealTime = 32;
  WriterThread(double rate_pps, bool hash)
      : out(hash),
        queue(kFasterThanRealTime * RecordQueue::capacity_for(rate_pps),
              kFasterThanRealTime * (static_cast<std::size_t>(AgentConfig{}.record_queue_mb) << 20),
              out, {}) {
    queue.start();
  }
  CountingJsonOutput out;
  RecordQueue queue;
};

struct FullResult {
  std::vector<std::uint64_t> fwd_counts;
  std::vector<std::uint64_t> rev_counts;
  std::vector<std::string> labels;
  std::uint64_t records = 0;
  std::uint64_t events = 0;
  std::uint64_t json_bytes = 0;
  std::uint64_t json_hash = 0;  // FNV-1a of every record's JSON, with --hash
  // Records the agent's queue refused (full): a figure without them is void.
  std::uint64_t dropped = 0;
  friend bool operator==(const FullResult&, const FullResult&) = default;
};

/// The agent's attribution side, built before the clock starts (once per agent run).
struct Chain {
  explicit Chain(const Drill& d) : a(config(d)), det(DetectorConfig{}) {
    for (const auto& s : d.sessions) a.add_session(s);
  }
  static AttributorConfig config(const Drill& d) {
    AttributorConfig cfg;
    cfg.taps = d.taps;
    return cfg;
  }
  Attributor a;
  Detector det;
};

/// The attribution side over two taps' cursors (already advanced to their first observation);
/// the records' JSON on this thread, or on `writer`'s.
template <class C>
FullResult attribute(const Drill& d, Chain& p, C (&cur)[2], bool hash, WriterThread* writer) {
  Attributor& a = p.a;
  Detector& det = p.det;
  std::vector<ProbeRecord> records;
  std::vector<PathSample> samples;
  std::vector<PathEvent> events;
  std::string json;
  FullResult res;
  std::size_t ev = 0;
  std::int64_t next_poll = kT0;
  if (hash) res.json_hash = kFnvBasis;
  auto drain = [&](std::int64_t now) {
    const std::size_t before = records.size();
    a.poll(now, records, &samples);
    for (const auto& s : samples) det.on_sample(s, now, events);
    res.records += records.size() - before;
    res.events += events.size();
    samples.clear();
    events.clear();
    if (writer != nullptr) {
      writer->queue.write_all(records);  // the pipeline worker's hand-off
      records.clear();
      return;
    }
    for (const auto& r : records) append_json(r, json);
    res.json_bytes += json.size();
    if (hash) res.json_hash = fnv1a(res.json_hash, json);
    records.clear();
    json.clear();
  };
  for (;;) {
    // The earliest of: a sender event, a frame on either tap.
    std::int64_t at = ev < d.events.size() ? d.events[ev].at : INT64_MAX;
    int which = -1;
    for (int t = 0; t < 2; ++t) {
      if (cur[t].has && cur[t].obs.ts_ns < at) {
        at = cur[t].obs.ts_ns;
        which = t;
      }
    }
    if (at == INT64_MAX) break;
    while (next_poll <= at) {  // the agent's 1 ms poll tick
      drain(next_poll);
      next_poll += kMs;
    }
    if (which >= 0) {
      a.on_observation(cur[which].index, cur[which].obs);
      cur[which].advance();
    } else {
      const auto& e = d.events[ev++];
      if (e.record) {
        a.on_record(d.records[e.index]);
      } else {
        a.on_sent(d.sent[e.index]);
      }
    }
  }
  if (writer != nullptr) {
    writer->queue.stop();
    res.json_bytes = writer->out.bytes();
    res.json_hash = writer->out.hash();
    res.dropped = writer->queue.dropped();
  }
  records.clear();
  a.flush(records, &samples);
  for (const auto& s : samples) det.on_sample(s, next_poll, events);
  res.records += records.size();
  res.events += events.size();
  res.labels = a.path_labels();
  for (const auto& c : a.stats().path_counts) {
    res.fwd_counts.push_back(c[0]);
    res.rev_counts.push_back(c[1]);
  }
  return res;
}

/// Everything the agent does between the capture and the output, in capture-time order; each
/// tap read and decoded on this thread and the records' JSON formatted here, or (`threaded`,
/// the agent's shape) a thread per tap reading and decoding and one formatting the JSON.
FullResult full(const Drill& d, Chain& p, bool threaded, bool hash) {
  if (!threaded) {
    Cursor cur[2];
    for (std::size_t t = 0; t < 2; ++t) {
      auto src = open_file(d.files[t]);
      if (!src) throw std::runtime_error(src.error());
      cur[t].src = std::move(*src);
      cur[t].tap = d.taps[t];
      cur[t].index = t;
      cur[t].advance();
    }
    return attribute(d, p, cur, hash, nullptr);
  }
  ThreadedCursor cur[2];
  for (std::size_t t = 0; t < 2; ++t) cur[t].start(d.files[t], d.taps[t], t);
  for (auto& c : cur) c.advance();
  double rate_pps = 0;
  for (const auto& s : d.sessions) rate_pps += s.rate_pps;
  WriterThread writer(rate_pps, hash);
  return attribute(d, p, cur, hash, &writer);
}

/// This process's CPU time (user + system) in ns: the bench is single-threaded, so on a shared
/// machine it counts only the bench's own work, where wall time also counts the waits for a CPU.
std::int64_t cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Best wall and best CPU seconds of one phase over the repeats.
struct Timing {
  double wall = 1e300;
  double cpu = 1e300;
  void add(std::int64_t wall_ns, std::int64_t cpu_ns) {
    wall = std::min(wall, static_cast<double>(wall_ns) / 1e9);
    cpu = std::min(cpu, static_cast<double>(cpu_ns) / 1e9);
  }
};

template <class F>
Timing best_seconds(int repeat, F&& f) {
  Timing best;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = bench::monotonic_ns();
    const auto c0 = cpu_ns();
    f();
    best.add(bench::monotonic_ns() - t0, cpu_ns() - c0);
  }
  return best;
}

int usage() {
  std::cerr
      << "usage: bench-attribution [--probes N] [--rate PPS] [--sessions S] "
         "[--esp-share F] [--repeat R] [--dir DIR] [--hash] [--profile|--profile-threaded]\n"
         "  --profile: write the drill, then run only the single-threaded full chain R times\n"
         "             (under perf or callgrind), print its CPU seconds, no figures\n"
         "  --profile-threaded: the same in the agent's shape (threads named tap0, tap1, writer)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--hash") {
      o.hash = true;
      continue;
    }
    if (a == "--profile" || a == "--profile-threaded") {
      o.profile = true;
      o.profile_threaded = a == "--profile-threaded";
      continue;
    }
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    try {
      if (a == "--probes") {
        o.probes = std::stoull(v);
      } else if (a == "--rate") {
        o.rate = std::stod(v);
      } else if (a == "--sessions") {
        o.sessions = static_cast<std::uint32_t>(std::stoul(v));
      } else if (a == "--esp-share") {
        o.esp_share = std::stod(v);
      } else if (a == "--repeat") {
        o.repeat = std::stoi(v);
      } else if (a == "--dir") {
        o.dir = v;
      } else {
        return usage();
      }
    } catch (const std::exception&) {
      std::cerr << "bench-attribution: bad value for " << a << ": " << v << "\n";
      return 2;
    }
  }
  if (o.probes == 0 || o.rate <= 0 || o.sessions == 0 || o.repeat < 1 || o.esp_share < 0 ||
      o.esp_share > 1) {
    return usage();
  }
  std::unique_ptr<test::TempDir> tmp;
  if (o.dir.empty()) {
    tmp = std::make_unique<test::TempDir>();
    o.dir = tmp->file("").substr(0, tmp->file("").size() - 1);
  }
  try {
    std::cerr << "bench-attribution: writing the drill (" << o.probes << " probes)...\n";
    const Drill d = make_drill(o, o.dir);
    const std::uint64_t frames = d.frames[0] + d.frames[1];
    if (o.profile) {
      for (int r = 0; r < o.repeat; ++r) {
        Chain p(d);
        const auto c0 = cpu_ns();
        const auto t0 = bench::monotonic_ns();
        const FullResult res = full(d, p, o.profile_threaded, o.hash);
        std::fprintf(stderr, "bench-attribution: profile: %llu records, %.3f CPU s, %.3f s\n",
                     static_cast<unsigned long long>(res.records),
                     static_cast<double>(cpu_ns() - c0) / 1e9,
                     static_cast<double>(bench::monotonic_ns() - t0) / 1e9);
      }
      return 0;
    }
    std::uint64_t sink = 0;
    std::cerr << "bench-attribution: bare libpcap reads...\n";
    const Timing bare = best_seconds(o.repeat, [&] { sink += bare_read(d); });
    std::cerr << "bench-attribution: decode...\n";
    const Timing dec = best_seconds(o.repeat, [&] { sink += decode_only(d); });
    // The full chain twice: reading and decoding on the attribution thread, then on a thread
    // per tap (as the agent's capture threads); both must give the same result.
    FullResult res[2];
    Timing att[2];
    double setup = 1e300;
    for (int threaded = 0; threaded < 2; ++threaded) {
      std::cerr << "bench-attribution: full attribution"
                << (threaded != 0 ? ", the agent's shape (a reader thread per tap, a JSON thread)"
                                  : "")
                << "...\n";
      for (int r = 0; r < o.repeat; ++r) {
        const auto t0 = bench::monotonic_ns();
        Chain p(d);
        const auto t1 = bench::monotonic_ns();
        const auto c1 = cpu_ns();
        res[threaded] = full(d, p, threaded != 0, o.hash);
        att[threaded].add(bench::monotonic_ns() - t1, cpu_ns() - c1);
        setup = std::min(setup, static_cast<double>(t1 - t0) / 1e9);
      }
    }
    if (res[1].dropped > 0) {
      throw std::runtime_error("the agent's record queue dropped " +
                               std::to_string(res[1].dropped) +
                               " records (its writer thread fell behind): no figure");
    }
    if (!(res[0] == res[1])) {
      throw std::runtime_error("the threaded readers gave another result than the single thread");
    }
    const auto nf = static_cast<double>(frames);
    nlohmann::json j;
    j["bench"] = "attribution";
    j["probes"] = o.probes;
    j["rate_pps"] = o.rate;
    j["sessions"] = o.sessions;
    j["esp_share"] = o.esp_share;
    j["frames"] = frames;
    j["repeat"] = o.repeat;
    j["bare_pcap"] = {
        {"seconds", bare.wall}, {"frames_per_s", nf / bare.wall}, {"cpu_seconds", bare.cpu}};
    j["decode"] = {
        {"seconds", dec.wall}, {"frames_per_s", nf / dec.wall}, {"cpu_seconds", dec.cpu}};
    const auto phase = [&](int t) {
      return nlohmann::json{{"seconds", att[t].wall},
                            {"probes_per_s", static_cast<double>(o.probes) / att[t].wall},
                            {"frames_per_s", nf / att[t].wall},
                            {"cpu_seconds", att[t].cpu},
                            {"setup_seconds", setup},
                            {"records", res[t].records},
                            {"events", res[t].events},
                            {"json_bytes", res[t].json_bytes}};
    };
    j["attribution"] = phase(0);
    j["attribution_threaded"] = phase(1);
    if (o.hash) j["json_fnv1a"] = res[0].json_hash;
    j["ratio_attribution_vs_bare"] = bare.wall / att[0].wall;
    j["ratio_attribution_threaded_vs_bare"] = bare.wall / att[1].wall;
    j["ratio_decode_vs_bare"] = bare.wall / dec.wall;
    j["cpu_ratio_attribution_vs_bare"] = bare.cpu / att[0].cpu;
    j["cpu_ratio_attribution_threaded_vs_bare"] = bare.cpu / att[1].cpu;
    j["cpu_ratio_decode_vs_bare"] = bare.cpu / dec.cpu;
    nlohmann::json paths;
    for (std::size_t i = 0; i < res[0].labels.size(); ++i) {
      paths[res[0].labels[i]] = {{"fwd", res[0].fwd_counts[i]}, {"rev", res[0].rev_counts[i]}};
    }
    j["paths"] = paths;
    j["checksum"] = sink;  // keeps the timed loops from being optimised away
    std::cout << j.dump(2) << "\n";
    std::fprintf(stderr,
                 "bare libpcap %.0f frames/s | decode %.0f frames/s (%.2fx of bare) | "
                 "attribution %.0f probes/s = %.0f frames/s (%.2fx of bare) | "
                 "agent's shape: %.0f probes/s (%.2fx of bare)\n"
                 "by CPU time: bare %.0f frames/s | decode %.2fx of bare | attribution %.0f "
                 "probes/s (%.2fx of bare) | agent's shape: %.0f probes/s (%.2fx of "
                 "bare)\n",
                 nf / bare.wall, nf / dec.wall, bare.wall / dec.wall,
                 static_cast<double>(o.probes) / att[0].wall, nf / att[0].wall,
                 bare.wall / att[0].wall, static_cast<double>(o.probes) / att[1].wall,
                 bare.wall / att[1].wall, nf / bare.cpu, bare.cpu / dec.cpu,
                 static_cast<double>(o.probes) / att[0].cpu, bare.cpu / att[0].cpu,
                 static_cast<double>(o.probes) / att[1].cpu, bare.cpu / att[1].cpu);
  } catch (const std::exception& e) {
    std::cerr << "bench-attribution: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
