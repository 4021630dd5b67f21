// What ThreadSanitizer must not report in this project's tests, linked into
// the tests whose threads share absl::Status values (the executor's: a
// future's result is a copy of the status the executor's thread made).
//
// Debian's Abseil is a set of uninstrumented shared libraries: TSan sees
// the memcpy/memcmp and operator delete they call but not their atomics. A
// Status (and its payload Cord) is refcounted inside libabsl_status and
// libabsl_cord, so when the last of two threads holding copies drops its
// copy, TSan sees that thread free memory the other read, with none of the
// refcount's ordering in between — a race that is not there. The thread
// that frees it is the executor's whenever the caller dropped its copy first
// (seen in 2 of 10 TSan runs of executor_test). `called_from_lib` ignores
// what those two libraries do through TSan's interceptors; they are not
// instrumented anyway, so nothing TSan could check in them is lost.
//
// TSan's own weak default of this hook wins over one in a shared library
// loaded after it, so the tests that link this library link statically.

extern "C" const char* __tsan_default_suppressions();  // TSan calls it

extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libabsl_status.so\n"
         "called_from_lib:libabsl_cord.so\n";
}
