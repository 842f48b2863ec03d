#pragma once

// Emission: a finished probe's record and its per-direction samples.
// Part of Attributor::Impl (attributor_impl.h); docs/attribution.md §2–3 has the rules.

#include <vector>

#include "pathsentry/common/record.h"
#include "pathsentry/probe/attribution/detector.h"

namespace pathsentry::probe::attr {

/// Where poll() puts what it finishes: records, and samples when asked for.
struct Out {
  std::vector<ProbeRecord>& records;
  std::vector<PathSample>* samples;
};

}  // namespace pathsentry::probe::attr
