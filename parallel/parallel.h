// parallel/parallel.h — umbrella header: everything public in one include.
//
//   #include "parallel/parallel.h"
//   parallel::RunParallelSteps({[] { BuildA(); }, [] { BuildB(); }});
//
// See run_parallel_steps.h (the throwing API and the fork contract),
// run_steps.h (the exception-free core), step.h (steps and reports),
// task_runner.h (BackgroundTaskRunner, RunTasksInProcessPool), failure.h,
// options.h and codec.h.

#ifndef PARALLEL_PARALLEL_H_
#define PARALLEL_PARALLEL_H_

#include "parallel/codec.h"               // IWYU pragma: export
#include "parallel/executor.h"            // IWYU pragma: export
#include "parallel/failure.h"             // IWYU pragma: export
#include "parallel/launcher.h"            // IWYU pragma: export
#include "parallel/options.h"             // IWYU pragma: export
#include "parallel/process.h"             // IWYU pragma: export
#include "parallel/run_hooks.h"           // IWYU pragma: export
#include "parallel/run_parallel_steps.h"  // IWYU pragma: export
#include "parallel/run_steps.h"           // IWYU pragma: export
#include "parallel/slurm.h"               // IWYU pragma: export
#include "parallel/step.h"                // IWYU pragma: export
#include "parallel/step_observer.h"       // IWYU pragma: export
#include "parallel/sync.h"                // IWYU pragma: export
#include "parallel/task_runner.h"         // IWYU pragma: export
#include "parallel/trace.h"               // IWYU pragma: export

#endif  // PARALLEL_PARALLEL_H_
