#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pathsentry::options {

/// One value given for a setting, from the command line or a TOML file, with where it came
/// from, so every error names file, key and value (ConfigError). TOML values arrive flattened
/// (see toml_file.h): a key path such as `targets[0].icmp.rate` and the value's text.
struct Value {
  /// What the TOML value was; values from the command line are Text (typed by their parser).
  enum class Type : std::uint8_t { Text, String, Integer, Float, Bool, Array };

  std::string text;          ///< as typed (a TOML string without quotes; an array as `[a, b]`)
  std::string file;          ///< "" = the command line
  std::string where;         ///< the flag as typed, or the key path in the file
  Type type = Type::Text;    ///< TOML: the value's type
  std::vector<Value> items;  ///< Array: its elements (`where` = `key[i]`)

  /// Throws ConfigError(file, where, text, why).
  [[noreturn]] void fail(const std::string& why) const;

  /// Typed readers shared by flags and files; each throws ConfigError naming file, key and
  /// value when the value does not fit (wrong TOML type, not a number, out of range).
  [[nodiscard]] std::int64_t integer(std::int64_t lo, std::int64_t hi) const;
  [[nodiscard]] double number(double lo, double hi) const;
  [[nodiscard]] bool boolean() const;
  [[nodiscard]] const std::string& string() const;
  /// A list: a TOML array's items, a single TOML string as a list of one, or the flag's value.
  [[nodiscard]] std::vector<Value> list() const;
  /// The value is one of `choices` (error lists them).
  [[nodiscard]] const std::string& one_of(std::initializer_list<std::string_view> choices) const;
};

/// How an option takes its value on the command line.
enum class Arg : std::uint8_t {
  None,      ///< a switch: `--quiet` (in a file: a boolean)
  One,       ///< `--rate 1000` or `--rate=1000`; the last one given wins
  Repeated,  ///< `--target A --target B`: every one is applied in order
};

/// One row of a program's option table: the single place where a setting's flag, TOML keys,
/// help text and setter are written. The table gives the usage text, parses the flags, checks
/// the file's keys and applies both with one precedence (file, then flags in order).
template <class Config>
struct Option {
  std::string_view flag;  ///< "--rate"; "" = file only
  /// TOML key paths this setting may appear at, array indices written as `[]`, e.g.
  /// {"defaults.rate", "targets[].rate"}; a pattern ending in `.*` takes every key below it
  /// (`ttl.hops.*`: a table whose keys are data); empty = command line only.
  std::vector<std::string_view> keys;
  std::string_view metavar;  ///< "PPS" in the usage text ("" for switches)
  std::string_view help;     ///< one or more usage lines (wrapped at '\n')
  Arg arg = Arg::One;
  /// Applies one value (a switch from the command line gets text "true").
  void (*apply)(Config&, const Value&) = nullptr;
};

/// The part of OptionTable that does not depend on the config type.
namespace detail {
struct Row {
  std::string_view flag;
  std::span<const std::string_view> keys;
  std::string_view metavar;
  std::string_view help;
  Arg arg;
};
/// The usage text: `header`, then a line per option with its help aligned.
std::string usage(std::string_view header, std::span<const Row> rows);
/// Splits the command line into (row index, value) in order. `--flag=value` and `--flag value`;
/// throws ConfigError for an unknown flag, a missing value or a value given to a switch.
std::vector<std::pair<std::size_t, Value>> parse_args(std::span<const Row> rows,
                                                      std::span<const std::string_view> args);
/// The row whose keys match `key_path` (indices removed: `targets[3].rate` → `targets[].rate`),
/// or rows.size().
std::size_t find_key(std::span<const Row> rows, std::string_view key_path);
/// Why `key_path` matches no row: "must be a table ([name])" or "must be an array of tables
/// ([[name]])" when rows have keys below it (the file gave a value where a table belongs),
/// else "is not a known key".
std::string unknown_key_why(std::span<const Row> rows, std::string_view key_path);
/// `targets[3].icmp.rate` → `targets[].icmp.rate`.
std::string key_pattern(std::string_view key_path);
}  // namespace detail

/// A program's options: usage, flags and TOML keys from one table.
template <class Config>
class OptionTable {
 public:
  explicit OptionTable(std::vector<Option<Config>> options) : options_(std::move(options)) {
    rows_.reserve(options_.size());
    for (const auto& o : options_) {
      rows_.push_back(
          {o.flag, std::span<const std::string_view>(o.keys), o.metavar, o.help, o.arg});
    }
  }

  /// The usage text.
  [[nodiscard]] std::string usage(std::string_view header) const {
    return detail::usage(header, rows_);
  }

  /// Parsed command line: options in the order given.
  struct Given {
    const Option<Config>* option;
    Value value;
  };
  /// Throws ConfigError for an unknown flag, a missing value or a value given to a switch.
  [[nodiscard]] std::vector<Given> parse_args(std::span<const std::string_view> args) const {
    std::vector<Given> out;
    for (auto& [i, v] : detail::parse_args(rows_, args))
      out.push_back({&options_[i], std::move(v)});
    return out;
  }

  /// The option a file's key path belongs to, or nullptr (unknown key).
  [[nodiscard]] const Option<Config>* find_key(std::string_view key_path) const {
    const std::size_t i = detail::find_key(rows_, key_path);
    return i < options_.size() ? &options_[i] : nullptr;
  }

  /// Applies a flattened file (toml_file.h) entry by entry; throws ConfigError for a key no
  /// option takes (see detail::unknown_key_why) and for any value its option refuses.
  void apply_file(Config& config, const std::vector<Value>& entries) const {
    for (const Value& v : entries) {
      const auto* o = find_key(v.where);
      if (o == nullptr) v.fail(detail::unknown_key_why(rows_, v.where));
      o->apply(config, v);
    }
  }

  /// The option with this flag, or nullptr.
  [[nodiscard]] const Option<Config>* find_flag(std::string_view flag) const {
    for (const auto& o : options_) {
      if (!o.flag.empty() && o.flag == flag) return &o;
    }
    return nullptr;
  }

  [[nodiscard]] const std::vector<Option<Config>>& options() const { return options_; }

 private:
  std::vector<Option<Config>> options_;
  std::vector<detail::Row> rows_;
};

}  // namespace pathsentry::options
