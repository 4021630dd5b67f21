#include "parallel/failure.h"

#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"

namespace parallel {
namespace {

// "<step> (pid N): " or "" when neither is known.
std::string Where(const ExceptionInfo& info) {
  std::string where = info.step;
  if (info.pid != 0) {
    absl::StrAppend(&where, where.empty() ? "" : " ", "(pid ", info.pid, ")");
  }
  if (!where.empty()) where += ": ";
  return where;
}

std::string DescribeAll(const std::vector<ExceptionInfo>& infos) {
  std::string text;
  for (const ExceptionInfo& info : infos) {
    absl::StrAppend(&text, Where(info), info.ToString(), "\n", info.traceback);
    if (!info.traceback.empty() && info.traceback.back() != '\n') {
      text.push_back('\n');
    }
  }
  return text;
}

}  // namespace

std::string ExceptionInfo::ToString() const {
  return absl::StrCat(type, ": ", message);
}

bool operator==(const ExceptionInfo& a, const ExceptionInfo& b) {
  return a.type == b.type && a.message == b.message &&
         a.traceback == b.traceback && a.step == b.step && a.pid == b.pid;
}

BackgroundFailure::BackgroundFailure(std::vector<ExceptionInfo> exc_infos)
    : std::runtime_error(DescribeAll(exc_infos)),
      exc_infos_(std::move(exc_infos)) {}

bool BackgroundFailure::HasFailureType(absl::string_view type) const {
  return absl::c_any_of(exc_infos_, [type](const ExceptionInfo& info) {
    return info.type == type;
  });
}

bool BackgroundFailure::MatchesFailureType(absl::string_view type) const {
  return !exc_infos_.empty() &&
         absl::c_all_of(exc_infos_, [type](const ExceptionInfo& info) {
           return info.type == type;
         });
}

std::string BackgroundFailure::ToSummaryString() const {
  std::string text;
  for (const ExceptionInfo& info : exc_infos_) {
    absl::StrAppend(&text, Where(info), info.ToString(), "\n");
  }
  return text;
}

}  // namespace parallel
