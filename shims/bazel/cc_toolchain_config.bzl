"""The toolchain's configuration: clang's flags and tools, with llmcc in front of clang.

Legacy tool paths, as Bazel's tutorial toolchain has them: Bazel then adds its standard
features itself (includes, defines, depfiles, copts, link inputs, archiving), which clang
understands. Only what differs from those defaults is here.
"""

load("@bazel_tools//tools/build_defs/cc:action_names.bzl", "ACTION_NAMES")
load(
    "@bazel_tools//tools/cpp:cc_toolchain_config_lib.bzl",
    "feature",
    "flag_group",
    "flag_set",
    "tool_path",
    "with_feature_set",
)

_COMPILE_ACTIONS = [ACTION_NAMES.c_compile, ACTION_NAMES.cpp_compile]

_LINK_ACTIONS = [
    ACTION_NAMES.cpp_link_executable,
    ACTION_NAMES.cpp_link_dynamic_library,
    ACTION_NAMES.cpp_link_nodeps_dynamic_library,
]

def _flags(actions, flags, with_features = []):
    return flag_set(
        actions = actions,
        flag_groups = [flag_group(flags = flags)],
        with_features = with_features,
    )

def _impl(ctx):
    llvm = ctx.attr.llvm_bin + "/"

    # cc_wrapper.sh runs llmcc. Its C driver compiles C++ as well, by extension; links go
    # through llmcc too, which hands them to clang unchanged.
    tool_paths = [
        tool_path(name = "gcc", path = "cc_wrapper.sh"),
        tool_path(name = "cpp", path = "cc_wrapper.sh"),
        tool_path(name = "ld", path = "/usr/bin/ld"),
        tool_path(name = "ar", path = llvm + "llvm-ar"),
        tool_path(name = "nm", path = llvm + "llvm-nm"),
        tool_path(name = "objcopy", path = llvm + "llvm-objcopy"),
        tool_path(name = "objdump", path = llvm + "llvm-objdump"),
        tool_path(name = "strip", path = llvm + "llvm-strip"),
        tool_path(name = "gcov", path = llvm + "llvm-cov"),
        tool_path(name = "dwp", path = llvm + "llvm-dwp"),
    ]
    features = [
        # `-c opt` means small: -Oz is a level llmcc takes over. fastbuild and dbg build at
        # -O0, which llmcc hands to clang untouched.
        feature(name = "opt"),
        feature(name = "dbg"),
        feature(name = "fastbuild"),
        feature(
            name = "default_compile_flags",
            enabled = True,
            flag_sets = [
                _flags(_COMPILE_ACTIONS, ["-Oz", "-DNDEBUG"], with_features = [
                    with_feature_set(features = ["opt"]),
                ]),
                _flags(_COMPILE_ACTIONS, ["-g"], with_features = [
                    with_feature_set(features = ["dbg"]),
                ]),
            ],
        ),
        feature(
            name = "default_link_flags",
            enabled = True,
            flag_sets = [_flags(_LINK_ACTIONS, ["-lstdc++", "-lm"])],
        ),
    ]
    return cc_common.create_cc_toolchain_config_info(
        ctx = ctx,
        features = features,
        cxx_builtin_include_directories = ctx.attr.builtin_include_directories,
        toolchain_identifier = "llmcc-k8",
        host_system_name = "x86_64-unknown-linux-gnu",
        target_system_name = "x86_64-unknown-linux-gnu",
        target_cpu = "k8",
        target_libc = "glibc",
        compiler = "clang",
        abi_version = "clang",
        abi_libc_version = "glibc",
        tool_paths = tool_paths,
    )

llmcc_cc_toolchain_config = rule(
    implementation = _impl,
    attrs = {
        "builtin_include_directories": attr.string_list(),
        "llvm_bin": attr.string(mandatory = True),
    },
    provides = [CcToolchainConfigInfo],
)
