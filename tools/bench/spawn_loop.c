// The physical limit for tools/bench/cli_vs_peers.sh: runs each line of
// stdin as a command (split on blanks, found in $PATH, as parallel_steps
// runs a line without shell metacharacters) with posix_spawnp, at most J at
// a time, and waits for them — no capture, no ordering, no reports. Its
// stdout and stderr are the commands'.
//
//   spawn_loop J < commands.txt

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char** environ;

enum { kMaxArgs = 64 };

// Waits for one child; returns 1 when it failed.
static int Reap(void) {
  int status;
  while (waitpid(-1, &status, 0) < 0) {
    if (errno != EINTR) {
      perror("spawn_loop: waitpid");
      exit(2);
    }
  }
  return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char** argv) {
  const int slots = argc > 1 ? atoi(argv[1]) : 0;
  if (slots <= 0) {
    fprintf(stderr, "usage: spawn_loop J < commands\n");
    return 2;
  }
  char* line = NULL;
  size_t capacity = 0;
  int running = 0;
  int failed = 0;
  while (getline(&line, &capacity, stdin) > 0) {
    char* args[kMaxArgs + 1];
    int n = 0;
    for (char* word = strtok(line, " \t\n"); word != NULL && n < kMaxArgs;
         word = strtok(NULL, " \t\n")) {
      args[n++] = word;
    }
    if (n == 0) continue;
    args[n] = NULL;
    if (running == slots) {
      failed += Reap();
      --running;
    }
    pid_t pid;
    const int error = posix_spawnp(&pid, args[0], NULL, NULL, args, environ);
    if (error != 0) {
      fprintf(stderr, "spawn_loop: %s: %s\n", args[0], strerror(error));
      ++failed;
      continue;
    }
    ++running;
  }
  while (running-- > 0) failed += Reap();
  free(line);
  return failed > 0;
}
