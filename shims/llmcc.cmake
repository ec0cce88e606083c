# CMake toolchain file: compile C and C++ through llmcc with clang-19 as the real compiler.
#   cmake -DCMAKE_TOOLCHAIN_FILE=<llmcc repo>/shims/llmcc.cmake -DCMAKE_BUILD_TYPE=MinSizeRel ..
# llmcc runs as a compiler launcher, so CMake detects and links with clang-19 itself and only
# compile steps go through llmcc. Size-optimising builds (-Os/-Oz) are what llmcc improves.
find_program(LLMCC_LAUNCHER NAMES llmcc REQUIRED)
find_program(LLMCC_CLANG NAMES clang-19 PATHS /usr/lib/llvm-19/bin REQUIRED)
find_program(LLMCC_CLANGXX NAMES clang++-19 PATHS /usr/lib/llvm-19/bin REQUIRED)
set(CMAKE_C_COMPILER "${LLMCC_CLANG}" CACHE FILEPATH "C compiler (real clang)")
set(CMAKE_CXX_COMPILER "${LLMCC_CLANGXX}" CACHE FILEPATH "C++ compiler (real clang)")
set(CMAKE_C_COMPILER_LAUNCHER "${LLMCC_LAUNCHER}" CACHE STRING "llmcc")
set(CMAKE_CXX_COMPILER_LAUNCHER "${LLMCC_LAUNCHER}" CACHE STRING "llmcc")
