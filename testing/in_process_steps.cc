#include "testing/in_process_steps.h"

#include "parallel/internal/in_process.h"

namespace parallel {
namespace testing {

InProcessSteps::InProcessSteps() { internal::EnterInProcessMode(); }

InProcessSteps::~InProcessSteps() { internal::LeaveInProcessMode(); }

}  // namespace testing
}  // namespace parallel
