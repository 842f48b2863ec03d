#include "pathsentry/common/toml_file.h"

#include <toml++/toml.h>

#include <fstream>
#include <sstream>

#include "pathsentry/common/config_error.h"

namespace pathsentry::options {
namespace {

std::string node_text(const toml::node& n) {
  if (const auto* s = n.as_string()) return s->get();
  std::ostringstream os;
  n.visit([&os](const auto& v) { os << v; });
  return os.str();
}

Value leaf(const toml::node& n, const std::string& file, std::string where) {
  Value v;
  v.text = node_text(n);
  v.file = file;
  v.where = std::move(where);
  if (n.is_string()) {
    v.type = Value::Type::String;
  } else if (n.is_integer()) {
    v.type = Value::Type::Integer;
  } else if (n.is_floating_point()) {
    v.type = Value::Type::Float;
  } else if (n.is_boolean()) {
    v.type = Value::Type::Bool;
  } else {
    v.type = Value::Type::Text;  // dates and times: no setting takes one, so every check fails
  }
  return v;
}

void flatten(const toml::table& t, const std::string& file, const std::string& prefix,
             std::vector<Value>& out) {
  for (const auto& [k, node] : t) {
    const std::string key =
        prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table()) {
      flatten(*sub, file, key, out);
    } else if (const auto* arr = node.as_array()) {
      if (!arr->empty() && arr->is_array_of_tables()) {
        for (std::size_t i = 0; i < arr->size(); ++i) {
          const toml::table& element = *arr->get(i)->as_table();
          const std::string where = key + "[" + std::to_string(i) + "]";
          // An element with no keys would otherwise vanish from the flattened view: a [[tap]]
          // or [[targets]] left empty by mistake must be refused, not ignored.
          if (element.empty())
            throw ConfigError(file, where, "", "is an empty table ([[" + key + "]])");
          flatten(element, file, where, out);
        }
        continue;
      }
      Value v;
      v.text = node_text(node);
      v.file = file;
      v.where = key;
      v.type = Value::Type::Array;
      for (std::size_t i = 0; i < arr->size(); ++i) {
        v.items.push_back(leaf(*arr->get(i), file, key + "[" + std::to_string(i) + "]"));
      }
      out.push_back(std::move(v));
    } else {
      out.push_back(leaf(node, file, key));
    }
  }
}

}  // namespace

std::vector<Value> parse_toml(std::string_view text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw ConfigError(file,
                      "line " + std::to_string(at.line) + ", column " + std::to_string(at.column),
                      "", "TOML syntax error: " + std::string(e.description()));
  }
  std::vector<Value> out;
  flatten(root, file, "", out);
  return out;
}

std::vector<Value> read_toml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "(file)", "", "cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path, "(file)", "", "cannot be read");
  return parse_toml(text.str(), path);
}

}  // namespace pathsentry::options
