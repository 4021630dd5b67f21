"""A repository rule that turns system pkg-config modules into cc_library targets.

Each module becomes a target of the same name (minus `prefix`, if given) whose
linkopts are what `pkg-config --libs` prints and whose copts are what
`pkg-config --cflags` prints. Headers are found on the compiler's system include
path, so the targets carry no hdrs. Nothing is downloaded.
"""

def _run(rctx, args):
    result = rctx.execute(args)
    if result.return_code != 0:
        fail("`%s` failed: %s" % (" ".join(args), result.stderr))
    return result.stdout

def _flags(text):
    return [flag for flag in text.strip().split(" ") if flag]

def _pkg_config_repository_impl(rctx):
    pkg_config = rctx.which("pkg-config")
    if not pkg_config:
        fail("pkg-config is not installed; run tools/setup.sh")
    pkg_config = str(pkg_config)

    modules = list(rctx.attr.modules)
    if rctx.attr.prefix:
        for line in _run(rctx, [pkg_config, "--list-all"]).splitlines():
            name = line.split(" ")[0]
            if name.startswith(rctx.attr.prefix):
                modules.append(name)
    if not modules:
        fail("no pkg-config modules found for @%s; run tools/setup.sh" % rctx.name)

    targets = []
    for module in sorted(modules):
        libs = _flags(_run(rctx, [pkg_config, "--libs", module]))
        cflags = _flags(_run(rctx, [pkg_config, "--cflags", module]))
        targets.append("""
cc_library(
    name = "{name}",
    copts = {cflags},
    linkopts = {libs},
)
""".format(name = module[len(rctx.attr.prefix):], cflags = repr(cflags), libs = repr(libs)))

    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD.bazel", 'package(default_visibility = ["//visibility:public"])\n' + "".join(targets))

pkg_config_repository = repository_rule(
    implementation = _pkg_config_repository_impl,
    attrs = {
        "modules": attr.string_list(doc = "pkg-config module names to expose"),
        "prefix": attr.string(doc = "expose every module starting with this, prefix stripped"),
    },
    environ = ["PKG_CONFIG_PATH"],
    local = True,
)
