// Helpers for the kernel tests: reproducible fresh seeds, random data, elementwise
// comparison that reports where it fails, and the finite-difference gradient check
// that every backward op is held to.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace colossus::kernels::testing {

// A fresh seed from std::random_device, or the value of COLOSSUS_TEST_SEED when set,
// to replay a failure.
uint64_t TestSeed();

// Base fixture: a fresh seed per test, its generator, and a trace that prints the seed
// with every failure of the test.
class SeededTest : public ::testing::Test {
 protected:
  SeededTest();
  uint64_t seed_;
  std::mt19937_64 rng_;

 private:
  ::testing::ScopedTrace trace_;
};

// n values uniform in [lo, hi).
std::vector<double> Uniform(size_t n, std::mt19937_64& rng, double lo = -1.0, double hi = 1.0);
// n integers uniform in [lo, hi].
std::vector<int32_t> UniformInts(size_t n, std::mt19937_64& rng, int32_t lo, int32_t hi);

// Elementwise conversion between vectors, e.g. Cast<float>(doubles).
template <typename To, typename From>
std::vector<To> Cast(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// A vector of n NaNs: outputs start poisoned, so an element an op forgets to write
// fails the comparison that follows.
template <typename F>
std::vector<F> Poisoned(size_t n) {
  return std::vector<F>(n, std::numeric_limits<F>::quiet_NaN());
}

// Expects |actual[i] - expected[i]| <= atol + rtol * |expected[i]| for every i (NaN
// never passes); on failure reports how many elements failed and the first few.
void ExpectAllClose(const std::string& what, const std::vector<double>& actual,
                    const std::vector<double>& expected, double atol, double rtol);
template <typename A>
void ExpectAllClose(const std::string& what, const std::vector<A>& actual,
                    const std::vector<double>& expected, double atol, double rtol) {
  ExpectAllClose(what, Cast<double>(actual), expected, atol, rtol);
}

// sum_i out[i] * weight[i], accumulated in long double: the scalar loss whose gradient
// with respect to out is `weight` (what the tests feed backward as dout).
double WeightedSum(const std::vector<double>& out, const std::vector<double>& weight);

struct GradCheckOptions {
  double h = 1e-6;        // central-difference step
  double rtol = 1e-6;     // relative to the numeric derivative
  double atol = 1e-8;     // the floor for derivatives near zero
  size_t max_points = 200;  // larger inputs are checked on a random subset
};

// Checks `analytic` (the op's backward: dloss/dx for every element of x) against the
// central difference (loss(x + h e_i) - loss(x - h e_i)) / 2h, where `loss` recomputes
// the forward from the current contents of *x. Perturbs *x in place and restores it.
// Elements checked: all of x, or a random subset of max_points drawn with `rng`.
void ExpectGradientMatches(const std::string& what, std::vector<double>* x,
                           const std::vector<double>& analytic,
                           const std::function<double()>& loss, std::mt19937_64& rng,
                           const GradCheckOptions& options = {});

}  // namespace colossus::kernels::testing
