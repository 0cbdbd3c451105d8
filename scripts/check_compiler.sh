#!/usr/bin/env bash
# llama-cpp-python (the `deploy` extra) has no wheel on PyPI: pip builds it from source
# the first time, which needs a C++ compiler. Fail early with what to install, rather than
# after minutes of pip output. (cmake comes from PyPI when the system has none.)
for cxx in "${CXX:-}" c++ g++ clang++; do
    if [ -n "$cxx" ] && command -v "$cxx" >/dev/null 2>&1; then
        exit 0
    fi
done
cat >&2 <<'MSG'
error: no C++ compiler found (tried $CXX, c++, g++, clang++).
llama-cpp-python, which `trimlab export` uses to run models in llama.cpp, is built from
source on the first install (about 7 minutes; pip's wheel cache serves later installs).
Install a compiler, then run `make setup` again:
  Debian/Ubuntu:  sudo apt-get install build-essential cmake
  Fedora:         sudo dnf install gcc-c++ cmake
  macOS:          xcode-select --install
  conda:          conda install -c conda-forge cxx-compiler cmake
MSG
exit 1
