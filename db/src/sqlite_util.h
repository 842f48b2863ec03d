#pragma once
// Thin RAII over the SQLite C API for the store: connections, statements, and the mapping of
// result codes to the store's ErrorKind. Private to db/.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "pathsentry/db/store.h"

namespace pathsentry::db::detail {

/// What a SQLite result code (extended) plus the OS errno behind it means for the caller.
/// ENOSPC/EDQUOT → Full and EROFS/EACCES/EPERM → ReadOnly also when SQLite reports them as an
/// I/O error or a failed open.
[[nodiscard]] ErrorKind kind_of(int extended_rc, int sys_errno);

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

/// The error of the last call on `db` that returned `rc`: its kind and a one-line message
/// "<path>: <what>: <sqlite message> (<errno text>)".
[[nodiscard]] StoreError error_of(sqlite3* db, int rc, const std::string& path,
                                  std::string_view what);

/// A thrown StoreError (inside a transaction: unwinds to the rollback). Never leaves db/.
struct SqlFailure {
  StoreError error;
};

/// A prepared statement, reset after each use. Not thread-safe (belongs to one connection).
class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, std::string_view sql, const std::string& path);
  Stmt(Stmt&& o) noexcept : st_(o.st_), db_(o.db_), path_(o.path_) { o.st_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(st_); }

  Stmt& bind(int i, std::int64_t v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind_blob(int i, std::string_view v);
  Stmt& bind_null(int i);
  Stmt& bind(int i, std::optional<std::int64_t> v) { return v ? bind(i, *v) : bind_null(i); }
  /// Steps once: true when a row is ready, false when done. Throws SqlFailure on error.
  bool step();
  /// Steps to completion (a statement without rows) and resets.
  void run();
  void reset();

  [[nodiscard]] std::int64_t i64(int col) const { return sqlite3_column_int64(st_, col); }
  [[nodiscard]] bool is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
  [[nodiscard]] std::optional<std::int64_t> opt_i64(int col) const {
    return is_null(col) ? std::nullopt : std::optional<std::int64_t>(i64(col));
  }
  [[nodiscard]] double f64(int col) const { return sqlite3_column_double(st_, col); }
  [[nodiscard]] std::string text(int col) const;

 private:
  sqlite3_stmt* st_ = nullptr;
  sqlite3* db_ = nullptr;
  const std::string* path_ = nullptr;
};

/// Runs SQL without results (may hold several statements). Throws SqlFailure.
void exec(sqlite3* db, const char* sql, const std::string& path);

}  // namespace pathsentry::db::detail
