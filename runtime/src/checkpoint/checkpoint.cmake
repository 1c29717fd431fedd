# The checkpoint module (runtime/include/colossus/checkpoint/): sharded, asynchronous,
# atomically committed checkpoints. Included from runtime/CMakeLists.txt after
# colossus_runtime is defined; kept here so the module's sources and its one extra
# dependency (Debian's libxxhash-dev, for the xxh64 checksums) stay in one place.
find_path(COLOSSUS_XXHASH_INCLUDE xxhash.h REQUIRED)
find_library(COLOSSUS_XXHASH_LIB xxhash REQUIRED)
target_sources(colossus_runtime PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/state.cc
  ${CMAKE_CURRENT_LIST_DIR}/format.cc
  ${CMAKE_CURRENT_LIST_DIR}/io.cc
  ${CMAKE_CURRENT_LIST_DIR}/committer.cc
  ${CMAKE_CURRENT_LIST_DIR}/writer.cc
  ${CMAKE_CURRENT_LIST_DIR}/reader.cc)
target_include_directories(colossus_runtime PRIVATE ${COLOSSUS_XXHASH_INCLUDE})
target_link_libraries(colossus_runtime PRIVATE ${COLOSSUS_XXHASH_LIB})
