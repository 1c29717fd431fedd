// PrometheusText: builds a scrape body in the Prometheus text exposition format 0.0.4.
//
//   PrometheusText t;
//   t.Gauge("colossus_generation", "Current generation of the worker group.", 4);
//   t.Counter("colossus_restarts_total", "Worker group restarts.", 2, {{"reason", "node lost"}});
//   std::string body = t.str();
//
// Samples of one metric name are grouped under a single "# HELP" and "# TYPE" line, in the
// order the names were first added, whatever order the calls came in (the format requires
// a metric family to be contiguous). The help of the first call for a name is kept.
// Label values and help text are escaped (backslash, double quote, newline); values are
// printed in the shortest form that reads back exactly, with NaN, +Inf and -Inf spelled
// the way Prometheus parses them.
//
// Programming errors abort (CHECK), since they are fixed in code, not by the user: a
// metric name outside [a-zA-Z_:][a-zA-Z0-9_:]*, a label name outside [a-zA-Z_][a-zA-Z0-9_]*
// or starting with "__", a label name repeated in one sample, one name used as both gauge
// and counter, the same label set twice for one name, a negative counter.
//
// Thread safety: none; build one per scrape (it is cheap) on the thread that renders.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace colossus::launcher {

class PrometheusText {
 public:
  void Gauge(std::string_view name, std::string_view help, double value,
             const std::vector<std::pair<std::string, std::string>>& labels = {});
  void Counter(std::string_view name, std::string_view help, double value,
               const std::vector<std::pair<std::string, std::string>>& labels = {});

  // The exposition text, each line ending in '\n'; empty when nothing was added.
  std::string str() const;

 private:
  struct Family {
    std::string name;
    std::string help;
    std::string type;                   // "gauge" or "counter"
    std::string samples;                // the sample lines, in call order
    std::set<std::string> label_sets;   // rendered "{...}" of each sample, to refuse repeats
  };
  void Add(std::string_view type, std::string_view name, std::string_view help, double value,
           const std::vector<std::pair<std::string, std::string>>& labels);

  std::vector<Family> families_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in families_
};

}  // namespace colossus::launcher
