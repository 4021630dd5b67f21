#include "parallel/parallel.h"
#include <fcntl.h>
int main(){ int dn=open("/dev/null",O_WRONLY); parallel::ParallelOptions o; o.max_parallel=2; o.output_fd=dn;
 std::vector<std::function<void()>> steps(500,[]{fputs("step output\n",stdout);});
 parallel::RunParallelSteps(steps,o); }
