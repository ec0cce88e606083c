#!/bin/sh
# The toolchain's compiler: Bazel wants it inside the toolchain's package, while the script
# that runs llmcc is written by llmcc_configure into @llmcc_config. Every action runs in the
# execution root, where that script is external/llmcc_config/llmcc.
exec external/llmcc_config/llmcc "$@"
