// Embedding the Colossus runtime in research code: build a model, train it on your own
// token batches, read the loss, save the weights. Public headers only.
//
//   embed [out.safetensors]
#include <cstdio>
#include <vector>

#include "colossus/colossus.h"
#include "colossus/weights.h"

int main(int argc, char** argv) {
  const char* out = argc > 1 ? argv[1] : "embed_model.safetensors";
  auto config = colossus::GPTPreset("tiny");  // L2 H2 C64, vocab 256
  auto device = colossus::CreateBackend("auto", /*cpu_threads=*/0);
  if (!config.ok() || !device.ok()) {
    std::fprintf(stderr, "embed: %s\n", std::string((config.ok() ? device.status() : config.status()).message()).c_str());
    return 1;
  }
  const int B = 8, T = 32;
  auto model = colossus::GPT::Create(*config, device->backend.get(), B, T);
  if (!model.ok()) return std::fprintf(stderr, "embed: %s\n", std::string(model.status().message()).c_str()), 1;
  (*model)->InitWeights(/*seed=*/42);
  colossus::OptimizerConfig oc;
  oc.lr = 3e-3f;
  oc.warmup_steps = 10;
  auto opt = colossus::AdamW::Create(oc, model->get());
  if (!opt.ok()) return std::fprintf(stderr, "embed: %s\n", std::string(opt.status().message()).c_str()), 1;

  // Your data: here, counting sequences (each token is the previous plus a row stride).
  std::vector<int32_t> tokens(B * T), targets(B * T);
  float loss = 0;
  for (int step = 0; step < 60; ++step) {
    for (int b = 0; b < B; ++b) {
      for (int t = 0; t < T; ++t) {
        tokens[b * T + t] = (step + b * 7 + t * (b + 1)) % 256;
        targets[b * T + t] = (step + b * 7 + (t + 1) * (b + 1)) % 256;
      }
    }
    (*model)->ZeroGrad();
    auto l = (*model)->Forward(tokens.data(), targets.data(), B, T);
    if (!l.ok()) return std::fprintf(stderr, "embed: %s\n", std::string(l.status().message()).c_str()), 1;
    (*model)->Backward();
    colossus::StepStats stats = (*opt)->Step(step);
    loss = *l;
    if (step % 10 == 0) std::printf("step %2d  loss %.4f  grad norm %.3f\n", step, loss, stats.grad_norm);
  }
  if (auto s = colossus::SaveWeights(**model, out); !s.ok()) {
    std::fprintf(stderr, "embed: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("final loss %.4f, weights saved to %s\n", loss, out);
  return 0;
}
