// The manifest parser: one object per parse. Sections are read in document order, each
// field checked as it is read (manifest_sections.cc); rules that join several fields run
// when their inputs are complete (a node's own rules at the end of that node, rules
// between nodes as each node ends, rules across sections in Finish, manifest_rules.cc).
// Every field read is remembered with its position so that a later rule can point at it.
//
// Internal to colossus_manifest.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "colossus/launcher/manifest.h"
#include "files.h"
#include "yaml_fields.h"

namespace colossus::launcher::manifest_internal {

class ManifestParser {
 public:
  ManifestParser(absl::string_view source, const ManifestOptions& options);

  absl::StatusOr<Manifest> Parse(absl::string_view yaml);

 private:
  // manifest_sections.cc
  absl::Status ReadDocument(const Field& root);
  absl::Status ReadJob(const Field& f);
  absl::Status ReadCoordinator(const Field& f);
  absl::Status ReadTls(const Field& f);
  absl::Status ReadNodes(const Field& f);
  absl::Status ReadNode(const Field& f, NodeSpec* node);
  absl::Status ReadGpus(const Field& f, NodeSpec* node);
  absl::Status ReadHostfile(const Field& f);
  absl::Status ReadWorker(const Field& f);
  absl::Status ReadParallelism(const Field& f);
  absl::Status ReadRestart(const Field& f);
  absl::Status ReadElastic(const Field& f);
  absl::Status ReadHealth(const Field& f);
  absl::Status ReadCheckpoint(const Field& f);
  absl::Status ReadAuth(const Field& f);
  absl::Status ReadTokenFile(const Field& f);
  absl::Status ReadSsh(const Field& f);
  // A path field resolved against the manifest's directory.
  absl::Status ReadPath(const Field& f, std::string* out);
  // A file that must be readable now (TLS material); its path into *out.
  absl::Status ReadReadableFile(const Field& f, std::string* out);

  // manifest_rules.cc
  // A node just read, against itself and the nodes before it.
  absl::Status CheckNode(const Field& f, NodeSpec* node);
  absl::Status CheckCoordinatorSection(const Field& f);
  // Defaults that depend on other sections, rules across sections, derived values.
  absl::Status Finish();
  absl::Status FinishCoordinator();
  absl::Status CheckParallelism();
  absl::Status CheckElastic();
  absl::Status CheckHealth();

  // Records a field read so that a later rule can point at it.
  FieldRule Rule(absl::string_view name, std::function<absl::Status(const Field&)> read);
  const Field* Seen(const std::string& path) const;
  absl::Status Error(const Field& f, absl::string_view rule) const {
    return FieldError(source_, f, rule);
  }
  // An error about `path`, at the field when it was written, else without a position.
  absl::Status ErrorAtPath(const std::string& path, absl::string_view rule) const;

  bool IsLocal(const std::string& host);

  std::string source_;
  ManifestOptions options_;
  std::unique_ptr<ThisMachine> this_machine_;  // read on first use
  std::string working_dir_;
  Manifest m_;
  std::map<std::string, Field> seen_;  // path -> the field as read
  // For the rules between nodes (CheckNode), each node's index by name and by address,
  // the nodes on each host, and the line each node starts on.
  std::map<std::string, int> node_by_name_;
  std::map<std::string, int> node_by_address_;
  std::map<std::string, std::vector<int>> nodes_by_host_;
  std::vector<int> node_line_;
};

}  // namespace colossus::launcher::manifest_internal
