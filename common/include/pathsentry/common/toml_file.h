#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pathsentry/common/options.h"

namespace pathsentry::options {

/// A TOML document flattened to its leaf values, so that configuration code needs no TOML
/// library in its headers and every value carries its key path for error messages:
/// `[agent] rate = 5` → {where "agent.rate", text "5", type Integer}; arrays of tables are
/// indexed (`targets[0].address`); an array of scalars is one Value of type Array whose items
/// are `key[i]`. Tables that hold nothing yield nothing, except an empty element of an array of
/// tables, which is an error (a `[[tap]]` left empty is a mistake, not nothing). Entries come
/// sorted by key path.
/// Throws ConfigError(file, "line L, column C", "", what) on a syntax error.
[[nodiscard]] std::vector<Value> parse_toml(std::string_view text, const std::string& file);

/// Reads and flattens `path`; throws ConfigError naming the file when it cannot be read or
/// parsed.
[[nodiscard]] std::vector<Value> read_toml_file(const std::string& path);

}  // namespace pathsentry::options
