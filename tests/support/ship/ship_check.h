#pragma once
// What the fake collector got, decoded the way the collector's ingest parses it
// (parse_json_line on every line), with the identities the collector deduplicates on.

#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "pathsentry/common/record_json.h"

namespace pathsentry::test {

struct Received {
  std::vector<BatchHeader> batches;                                             // in arrival order
  std::map<std::tuple<std::string, std::uint32_t, std::uint64_t>, int> probes;  // run,session,seq
  std::map<std::tuple<std::string, std::uint32_t, std::int64_t, int, std::string>, Rollup>
      rollups;                                                  // run,session,second,dir,path
  std::map<std::pair<std::string, std::uint64_t>, int> events;  // run,event_id
  std::vector<ProbeRecord> probe_list;
  int duplicate_rollups = 0;

  void add(const std::string& body) {
    std::size_t pos = 0;
    int line = 0;
    std::string run;
    while (pos < body.size()) {
      const std::size_t nl = body.find('\n', pos);
      REQUIRE(nl != std::string::npos);
      const std::string l = body.substr(pos, nl - pos);
      pos = nl + 1;
      ++line;
      auto p = probe::parse_json_line(l);
      INFO(l);
      REQUIRE(p);
      if (line == 1) {
        REQUIRE(std::holds_alternative<BatchHeader>(*p));
        batches.push_back(std::get<BatchHeader>(*p));
        run = batches.back().run;
        continue;
      }
      REQUIRE_FALSE(std::holds_alternative<BatchHeader>(*p));
      if (const auto* r = std::get_if<ProbeRecord>(&*p)) {
        ++probes[std::make_tuple(run, r->session_id, r->seq)];
        probe_list.push_back(*r);
      } else if (const auto* ru = std::get_if<Rollup>(&*p)) {
        const auto key = std::make_tuple(run, ru->session_id, ru->second_ns,
                                         static_cast<int>(ru->direction), ru->path);
        if (!rollups.emplace(key, *ru).second) ++duplicate_rollups;
      } else if (const auto* e = std::get_if<PathEvent>(&*p)) {
        REQUIRE(e->event_id != 0);
        ++events[std::make_pair(run, e->event_id)];
      }
    }
  }
  /// Every accepted body's batch is new: per run, batch numbers strictly rising from 1.
  void check_order() const {
    std::map<std::string, std::uint64_t> last;
    for (const auto& b : batches) {
      INFO("run " << b.run << " batch " << b.batch);
      CHECK(b.batch == last[b.run] + 1);
      last[b.run] = b.batch;
    }
  }
  /// Sum of `sent` over a session's rollups in one direction.
  [[nodiscard]] std::uint64_t sent(const std::string& run, std::uint32_t session,
                                   Direction d) const {
    std::uint64_t n = 0;
    for (const auto& [k, r] : rollups) {
      if (std::get<0>(k) == run && r.session_id == session && r.direction == d) n += r.sent;
    }
    return n;
  }
};

}  // namespace pathsentry::test
