# colossus-export (colossus/hf_export.h): checkpoints and weights files to and from
# Hugging Face GPT-2 safetensors. Included from runtime/CMakeLists.txt after
# colossus_runtime and the checkpoint module; the library part joins colossus_runtime.
target_sources(colossus_runtime PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/hf_names.cc
  ${CMAKE_CURRENT_LIST_DIR}/hf_convert.cc
  ${CMAKE_CURRENT_LIST_DIR}/model_sources.cc)

add_executable(colossus-export ${CMAKE_CURRENT_LIST_DIR}/../../tools/colossus_export.cc)
target_link_libraries(colossus-export PRIVATE colossus_runtime CLI11::CLI11)
colossus_target_warnings(colossus-export)
