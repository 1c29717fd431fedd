#include "kernels/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <sstream>

namespace colossus::kernels::testing {

uint64_t TestSeed() {
  if (const char* env = std::getenv("COLOSSUS_TEST_SEED"); env != nullptr && *env != '\0') {
    return std::strtoull(env, nullptr, 10);
  }
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) | device();
}

SeededTest::SeededTest()
    : seed_(TestSeed()),
      rng_(seed_),
      trace_(__FILE__, __LINE__,
             "seed " + std::to_string(seed_) + " (replay with COLOSSUS_TEST_SEED=" +
                 std::to_string(seed_) + ")") {}

std::vector<double> Uniform(size_t n, std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

std::vector<int32_t> UniformInts(size_t n, std::mt19937_64& rng, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> dist(lo, hi);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = dist(rng);
  return v;
}

void ExpectAllClose(const std::string& what, const std::vector<double>& actual,
                    const std::vector<double>& expected, double atol, double rtol) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t bad = 0;
  std::ostringstream first;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::fabs(actual[i] - expected[i]);
    // Written so that a NaN on either side fails.
    if (!(err <= atol + rtol * std::fabs(expected[i]))) {
      if (bad < 5) {
        first << "\n  [" << i << "] actual " << actual[i] << " expected " << expected[i]
              << " (|diff| " << err << ")";
      }
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << actual.size()
                     << " elements differ beyond atol " << atol << " + rtol " << rtol
                     << first.str();
}

double WeightedSum(const std::vector<double>& out, const std::vector<double>& weight) {
  long double sum = 0;
  for (size_t i = 0; i < out.size(); ++i) sum += static_cast<long double>(out[i]) * weight[i];
  return static_cast<double>(sum);
}

void ExpectGradientMatches(const std::string& what, std::vector<double>* x,
                           const std::vector<double>& analytic,
                           const std::function<double()>& loss, std::mt19937_64& rng,
                           const GradCheckOptions& options) {
  ASSERT_EQ(x->size(), analytic.size()) << what;
  std::vector<size_t> points(x->size());
  std::iota(points.begin(), points.end(), size_t{0});
  if (points.size() > options.max_points) {
    std::shuffle(points.begin(), points.end(), rng);
    points.resize(options.max_points);
  }
  size_t bad = 0;
  std::ostringstream first;
  for (size_t i : points) {
    const double saved = (*x)[i];
    (*x)[i] = saved + options.h;
    const double plus = loss();
    (*x)[i] = saved - options.h;
    const double minus = loss();
    (*x)[i] = saved;
    const double numeric = (plus - minus) / (2 * options.h);
    const double err = std::fabs(analytic[i] - numeric);
    if (!(err <= options.atol + options.rtol * std::fabs(numeric))) {
      if (bad < 5) {
        first << "\n  d/d" << what << "[" << i << "]: analytic " << analytic[i]
              << " numeric " << numeric << " (|diff| " << err << ")";
      }
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << "gradient of " << what << ": " << bad << " of " << points.size()
                     << " checked elements differ from central differences (h " << options.h
                     << ", rtol " << options.rtol << ", atol " << options.atol << ")"
                     << first.str();
}

}  // namespace colossus::kernels::testing
