# Every dependency is a Debian package (scripts/setup.sh) or the CUDA toolkit.
find_package(CUDAToolkit REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(yaml-cpp CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
# The control plane (proto/, launcher/): gRPC 1.51 and protobuf 3.21 from Debian.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
if(COLOSSUS_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()
# Python with PyTorch is the independent reference for the model test and the CPU
# benchmark. Debian's python3-torch imports only under /usr/bin/python3.
set(COLOSSUS_TORCH_PYTHON "/usr/bin/python3" CACHE FILEPATH "Python interpreter that can import torch")

# OpenBLAS, the OpenMP build explicitly: our kernels parallelise with OpenMP, and a BLAS
# call made inside an OpenMP region then runs single-threaded instead of spawning its own
# pthreads and oversubscribing the cores. Debian's default alternative is the pthread
# build, so we link the openmp one by path and pin it with an RPATH.
find_library(COLOSSUS_OPENBLAS_LIB NAMES openblas
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH REQUIRED)
find_path(COLOSSUS_OPENBLAS_INCLUDE cblas.h
  PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH REQUIRED)
get_filename_component(COLOSSUS_OPENBLAS_DIR ${COLOSSUS_OPENBLAS_LIB} DIRECTORY)
add_library(colossus_openblas INTERFACE)
target_include_directories(colossus_openblas SYSTEM INTERFACE ${COLOSSUS_OPENBLAS_INCLUDE})
target_link_libraries(colossus_openblas INTERFACE ${COLOSSUS_OPENBLAS_LIB} OpenMP::OpenMP_CXX)
target_link_options(colossus_openblas INTERFACE "LINKER:-rpath,${COLOSSUS_OPENBLAS_DIR}")
