// colossus-launch: the one command users run. See launch_main.h for the modes.
#include <cstring>

#include "absl/synchronization/mutex.h"
#include "launch_main.h"

int main(int argc, char** argv) {
  // Debian's abseil checks every mutex for lock-order cycles; the control plane's hot
  // paths should not pay for that (PLATFORM.md, "gRPC at scale").
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--agent") == 0) return colossus::launcher::AgentMain(argc, argv);
    if (std::strcmp(argv[i], "--") == 0) break;
  }
  if (argc > 1 && (std::strcmp(argv[1], "status") == 0 || std::strcmp(argv[1], "stop") == 0)) {
    return colossus::launcher::ControlMain(argc, argv);
  }
  return colossus::launcher::LaunchMain(argc, argv);
}
