// The exposition text a Prometheus server parses: exact bytes, since a stray space or a
// repeated # TYPE line makes the whole scrape fail on the Prometheus side.
#include "colossus/launcher/prometheus_text.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace colossus::launcher {
namespace {

TEST(PrometheusTextTest, EmptyIsEmpty) { EXPECT_EQ(PrometheusText().str(), ""); }

TEST(PrometheusTextTest, GaugeAndCounterExactText) {
  PrometheusText t;
  t.Gauge("colossus_generation", "Current generation.", 4);
  t.Counter("colossus_restarts_total", "Worker group restarts.", 2, {{"reason", "node_lost"}});
  EXPECT_EQ(t.str(),
            "# HELP colossus_generation Current generation.\n"
            "# TYPE colossus_generation gauge\n"
            "colossus_generation 4\n"
            "# HELP colossus_restarts_total Worker group restarts.\n"
            "# TYPE colossus_restarts_total counter\n"
            "colossus_restarts_total{reason=\"node_lost\"} 2\n");
}

TEST(PrometheusTextTest, HelpAndTypeOncePerNameEvenWhenCallsInterleave) {
  PrometheusText t;
  t.Gauge("node_up", "Whether the node's agent is connected.", 1, {{"node", "a"}});
  t.Gauge("step", "Last committed step.", 100);
  t.Gauge("node_up", "Whether the node's agent is connected.", 0, {{"node", "b"}});
  EXPECT_EQ(t.str(),
            "# HELP node_up Whether the node's agent is connected.\n"
            "# TYPE node_up gauge\n"
            "node_up{node=\"a\"} 1\n"
            "node_up{node=\"b\"} 0\n"
            "# HELP step Last committed step.\n"
            "# TYPE step gauge\n"
            "step 100\n");
}

TEST(PrometheusTextTest, LabelValuesAreEscaped) {
  PrometheusText t;
  t.Gauge("m", "h", 1, {{"path", "C:\\runs\\\"x\"\nnext"}, {"plain", "ok"}});
  EXPECT_EQ(t.str(),
            "# HELP m h\n"
            "# TYPE m gauge\n"
            "m{path=\"C:\\\\runs\\\\\\\"x\\\"\\nnext\",plain=\"ok\"} 1\n");
}

TEST(PrometheusTextTest, HelpIsEscapedButKeepsQuotes) {
  PrometheusText t;
  t.Counter("c", "a \"quoted\" back\\slash\nsecond line", 0);
  EXPECT_EQ(t.str(),
            "# HELP c a \"quoted\" back\\\\slash\\nsecond line\n"
            "# TYPE c counter\n"
            "c 0\n");
}

TEST(PrometheusTextTest, ValuesReadBackExactlyAndSpecialValuesAreSpelledForPrometheus) {
  PrometheusText t;
  t.Gauge("v", "h", 0.1, {{"k", "a"}});
  t.Gauge("v", "h", 1e21, {{"k", "b"}});
  t.Gauge("v", "h", -2.5e-7, {{"k", "c"}});
  t.Gauge("v", "h", std::numeric_limits<double>::quiet_NaN(), {{"k", "d"}});
  t.Gauge("v", "h", std::numeric_limits<double>::infinity(), {{"k", "e"}});
  t.Gauge("v", "h", -std::numeric_limits<double>::infinity(), {{"k", "f"}});
  t.Gauge("v", "h", 12345678901234.0, {{"k", "g"}});
  EXPECT_EQ(t.str(),
            "# HELP v h\n"
            "# TYPE v gauge\n"
            "v{k=\"a\"} 0.1\n"
            "v{k=\"b\"} 1e+21\n"
            "v{k=\"c\"} -2.5e-07\n"
            "v{k=\"d\"} NaN\n"
            "v{k=\"e\"} +Inf\n"
            "v{k=\"f\"} -Inf\n"
            "v{k=\"g\"} 12345678901234\n");
}

using PrometheusTextDeathTest = ::testing::Test;

TEST(PrometheusTextDeathTest, ProgrammingErrorsAbortNamingTheMetric) {
  EXPECT_DEATH(PrometheusText().Gauge("bad-name", "h", 1), "bad-name");
  EXPECT_DEATH(PrometheusText().Gauge("m", "h", 1, {{"0k", "v"}}), "0k");
  EXPECT_DEATH(PrometheusText().Gauge("m", "h", 1, {{"k", "v"}, {"k", "w"}}), "repeated");
  EXPECT_DEATH(PrometheusText().Counter("m", "h", -1), "negative");
  EXPECT_DEATH(
      {
        PrometheusText t;
        t.Gauge("m", "h", 1);
        t.Counter("m", "h", 1);
      },
      "counter after gauge");
  EXPECT_DEATH(
      {
        PrometheusText t;
        t.Gauge("m", "h", 1, {{"k", "v"}});
        t.Gauge("m", "h", 2, {{"k", "v"}});
      },
      "added twice");
}

}  // namespace
}  // namespace colossus::launcher
