// The public C++ API of the Colossus runtime, for programs that embed it.
// See examples/embed for a complete program in about 50 lines.
#pragma once

#include "colossus/config.h"        // GPTConfig, presets
#include "colossus/device.h"        // CreateBackend("auto" | "cpu" | "cuda")
#include "colossus/model.h"         // GPT: Forward, Backward, parameters
#include "colossus/optimizer.h"     // AdamW, learning-rate schedule, clipping
