#include "sqlite_util.h"

#include <cerrno>
#include <cstring>

namespace pathsentry::db::detail {

ErrorKind kind_of(int extended_rc, int sys_errno) {
  if (sys_errno == ENOSPC || sys_errno == EDQUOT) return ErrorKind::Full;
  if (sys_errno == EROFS) return ErrorKind::ReadOnly;
  switch (extended_rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorKind::Busy;
    case SQLITE_FULL:
      return ErrorKind::Full;
    case SQLITE_READONLY:
      return ErrorKind::ReadOnly;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorKind::Corrupt;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return (sys_errno == EACCES || sys_errno == EPERM) ? ErrorKind::ReadOnly : ErrorKind::Io;
    default:
      return ErrorKind::Io;
  }
}

StoreError error_of(sqlite3* db, int rc, const std::string& path, std::string_view what) {
  const int sys = db != nullptr ? sqlite3_system_errno(db) : 0;
  const int ext = db != nullptr ? sqlite3_extended_errcode(db) : rc;
  StoreError e;
  // The connection's code is the precise one when it matches the call's primary code.
  e.kind = kind_of((ext & 0xff) == (rc & 0xff) ? ext : rc, sys);
  e.message = path;
  e.message += ": ";
  e.message += what;
  e.message += ": ";
  e.message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (sys != 0) {
    e.message += " (";
    e.message += std::strerror(sys);
    e.message += ")";
  }
  return e;
}

Stmt::Stmt(sqlite3* db, std::string_view sql, const std::string& path) : db_(db), path_(&path) {
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &st_, nullptr);
  if (rc != SQLITE_OK) throw SqlFailure{error_of(db, rc, path, "prepare")};
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(st_);
    st_ = o.st_;
    db_ = o.db_;
    path_ = o.path_;
    o.st_ = nullptr;
  }
  return *this;
}

Stmt& Stmt::bind(int i, std::int64_t v) {
  sqlite3_bind_int64(st_, i, v);
  return *this;
}
Stmt& Stmt::bind(int i, std::string_view v) {
  // A null data pointer would bind NULL: an empty string_view is the empty text.
  sqlite3_bind_text64(st_, i, v.data() != nullptr ? v.data() : "", v.size(), SQLITE_STATIC,
                      SQLITE_UTF8);
  return *this;
}
Stmt& Stmt::bind_blob(int i, std::string_view v) {
  sqlite3_bind_blob64(st_, i, v.data() != nullptr ? v.data() : "", v.size(), SQLITE_STATIC);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  sqlite3_bind_null(st_, i);
  return *this;
}

bool Stmt::step() {
  const int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  StoreError e = error_of(db_, rc, *path_, "statement");
  sqlite3_reset(st_);
  throw SqlFailure{std::move(e)};
}

void Stmt::run() {
  while (step()) {
  }
  reset();
}

void Stmt::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

std::string Stmt::text(int col) const {
  const auto* p = sqlite3_column_text(st_, col);
  const int n = sqlite3_column_bytes(st_, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

void exec(sqlite3* db, const char* sql, const std::string& path) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) throw SqlFailure{error_of(db, rc, path, sql)};
}

}  // namespace pathsentry::db::detail
