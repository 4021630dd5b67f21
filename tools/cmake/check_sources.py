#!/usr/bin/env python3
"""Checks that the CMake build and the Bazel build list the same sources.

Every .cc and .h that a cc_library / cc_binary / cc_test in a BUILD file
names must appear in a CMakeLists.txt, and every one a CMakeLists.txt names
must be in a BUILD file (testing/cmake_consumer/, a project of its own, is
left out). Prints what is missing on either side and exits 1, or 0 silently.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = re.compile(r'[\w./${}-]+\.(?:cc|h)\b')
RULE = re.compile(r'\b(cc_library|cc_binary|cc_test)\((.*?)\n\)', re.S)
LIST = re.compile(r'\b(srcs|hdrs)\s*=\s*\[(.*?)\]', re.S)


def bazel_sources():
    found = set()
    for top in ("parallel", "testing", "tools"):
        for directory, _, files in os.walk(os.path.join(ROOT, top)):
            if "BUILD" not in files:
                continue
            package = os.path.relpath(directory, ROOT)
            text = open(os.path.join(directory, "BUILD")).read()
            for _, body in RULE.findall(text):
                for _, items in LIST.findall(body):
                    for name in re.findall(r'"([^"]+\.(?:cc|h))"', items):
                        found.add(os.path.normpath(os.path.join(package, name)))
    return found


def cmake_sources():
    found = set()
    for directory, _, files in os.walk(ROOT):
        rel = os.path.relpath(directory, ROOT)
        if rel.startswith((".", "bazel-", "testing/cmake_consumer")) or \
                "CMakeLists.txt" not in files:
            continue
        text = open(os.path.join(directory, "CMakeLists.txt")).read()
        text = re.sub(r'#.*', '', text)
        for name in SOURCE.findall(text):
            if name.startswith("${PROJECT_SOURCE_DIR}/"):
                path = name[len("${PROJECT_SOURCE_DIR}/"):]
            elif name.startswith("${CMAKE_CURRENT_SOURCE_DIR}/"):
                path = os.path.join(rel, name[len("${CMAKE_CURRENT_SOURCE_DIR}/"):])
            elif "$" in name:
                continue  # a generated or foreach-built name: checked below
            else:
                path = os.path.join(rel, name)
            found.add(os.path.normpath(path))
        # foreach(test a b c) ... ${test}.cc
        for var, names, body in re.findall(
                r'foreach\((\w+)\s+([^)]*)\)(.*?)endforeach\(\)', text, re.S):
            for pattern in set(re.findall(r'[\w/]*\$\{' + var + r'\}\.cc', body)):
                for item in names.split():
                    path = pattern.replace("${" + var + "}", item)
                    found.add(os.path.normpath(os.path.join(rel, path)))
    return found


def main():
    bazel, cmake = bazel_sources(), cmake_sources()
    problems = [f"in BUILD but not in CMake: {p}" for p in sorted(bazel - cmake)]
    problems += [f"in CMake but not in BUILD: {p}" for p in sorted(cmake - bazel)
                 if os.path.exists(os.path.join(ROOT, p))]
    problems += [f"CMake names a missing file: {p}" for p in sorted(cmake)
                 if not os.path.exists(os.path.join(ROOT, p))]
    for line in problems:
        print("check_sources: " + line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
