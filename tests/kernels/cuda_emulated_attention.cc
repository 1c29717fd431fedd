// The CUDA attention entry points (kernels/cuda/attention.h), compiled from their own
// source for the host: attention.cu's argument checks and its choice of kernels, the
// launchers, and the kernels, all running on the CPU through
// kernels/cuda/attention_emulation.h. The emulated CUDA backend
// (cuda_emulated_backend.cc) and the attention emulation test call them.
//
// These definitions take the place of the library's (colossus_kernels' attention*.cu)
// in the test binaries that link this file, which is why it is part of an object
// library: object files are always linked, so the linker never takes the library's.
// The emulation's LaunchScope chooses how copies land and collects problems; without one
// a problem aborts with the list.
#define COLOSSUS_ATTN_EMULATE 1

#include "cuda/attention.cu"
#include "cuda/attention_backward.cu"
#include "cuda/attention_forward.cu"
#include "cuda/attention_reference.cu"
