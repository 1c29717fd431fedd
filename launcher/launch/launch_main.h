// The entry points of colossus-launch, one per mode (main.cc dispatches on argv[1]).
#pragma once

#include <string>
#include <vector>

namespace colossus::launcher {

// colossus-launch manifest.yaml [options] [-- worker args]
int LaunchMain(int argc, char** argv);
// colossus-launch --agent ... -- command
int AgentMain(int argc, char** argv);
// colossus-launch status|stop ...
int ControlMain(int argc, char** argv);

// Removes "--" and everything after it from argv (argc updated) and returns what followed.
std::vector<std::string> CommandAfterDoubleDash(int* argc, char** argv);

}  // namespace colossus::launcher
