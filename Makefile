# Two commands matter: `make run` and `make test`. Everything else is what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
HOST   ?= 127.0.0.1
PORT   ?= 8000
AMX    ?= 0
LLAMA_CPP_VERSION := 0.3.36

ISA    ?= native
TORCH  ?= 0

# The default native build SIGSEGVs in ggml_backend_amx_mul_mat on CPUs that advertise AMX inside
# virtual machines that do not grant it, so AMX is opt-in (`make run AMX=1`).
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
ifeq ($(ISA),avx2)
# What most laptops and desktops have (Intel client CPUs since Alder Lake, AMD before Zen 4), built
# on any x86 machine: AVX2, FMA and F16C, no native tuning, no AVX-512, no VNNI, no AMX.
CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
else ifeq ($(ISA),native)
ifeq ($(AMX),1)
CMAKE_ARGS := -DGGML_NATIVE=ON
else
CMAKE_ARGS := -DGGML_NATIVE=ON -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
endif
else
$(error ISA=$(ISA): use ISA=native (the default: this machine's CPU) or ISA=avx2)
endif

# CUDA=1: llama.cpp's CUDA backend as well, compiled for this machine's GPUs only (compute capability
# 9.0 -> 90): each further architecture is another full compile of ggml's CUDA kernels, so this keeps
# the build to minutes. It adds to the CPU flags above (ISA=avx2 CUDA=1 works). Without a GPU, its
# driver or the CUDA compiler it stops here, before anything is downloaded or built.
CUDA ?= 0
ifeq ($(CUDA),1)
NVIDIA_SMI := $(shell command -v nvidia-smi 2>/dev/null)
CUDA_HOME  ?= /usr/local/cuda
NVCC       := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard $(CUDA_HOME)/bin/nvcc))
CUDA_ARCHS := $(if $(NVIDIA_SMI),$(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null \
  | tr -d ' .' | grep -E '^[0-9]+$$' | sort -un | paste -sd';'))
ifeq ($(NVIDIA_SMI),)
$(error CUDA=1: nvidia-smi is not installed, so this machine has no NVIDIA driver (or no NVIDIA GPU). \
  CUDA=1 builds for the GPUs of the machine it runs on: install the NVIDIA driver there, or build for \
  the CPU with `make install` (no CUDA=1))
endif
ifeq ($(CUDA_ARCHS),)
$(error CUDA=1: `nvidia-smi --query-gpu=compute_cap --format=csv,noheader` lists no GPU (is the driver \
  loaded? does `nvidia-smi -L` list one? CUDA_VISIBLE_DEVICES may hide them). Build for the CPU with \
  `make install` (no CUDA=1))
endif
ifeq ($(NVCC),)
$(error CUDA=1: the CUDA compiler nvcc is neither on PATH nor in $(CUDA_HOME)/bin; GPUs found: \
  compute capability $(CUDA_ARCHS). Install the CUDA toolkit (e.g. Debian's nvidia-cuda-toolkit, or \
  NVIDIA's) or put its bin folder on PATH, then run this again)
endif
CMAKE_ARGS += -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHS) -DCMAKE_CUDA_COMPILER=$(NVCC)
else ifneq ($(CUDA),0)
$(error CUDA=$(CUDA): use CUDA=1 (llama.cpp with its CUDA backend) or leave it out)
endif

# Our changes to llama.cpp (native/patches/README.md), applied to the sdist before it is built.
PATCHES := $(sort $(wildcard native/patches/*.patch))

# A native build only fits the CPU, flags and patches it was built with: key our own wheel folder by
# all three, and never let pip's cache hand back a wheel built another way.
BUILD_KEY := $(shell { printf '%s|%s|%s' '$(LLAMA_CPP_VERSION)' '$(CMAKE_ARGS)' "$$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)"; cat $(PATCHES); } | sha256sum | cut -c1-16)
WHEELS    := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hearth/wheels/$(BUILD_KEY)
STAMP     := $(VENV)/.hearth-$(BUILD_KEY)

.PHONY: run test lint bench install wheel clean constraints llama-server kernel-test cmake-args gpu-bundle \
  ggml-converter

run: install
	$(VENV)/bin/chainlit run app.py -w --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/decode.py
	$(PY) bench/settings.py
	$(PY) bench/threads.py
	$(PY) bench/turns.py
	$(PY) bench/attention.py
	$(PY) bench/concurrent.py
	$(PY) bench/rest.py
	$(PY) bench/cache.py
	$(PY) bench/load.py

# `make install TORCH=1` (also run/test) adds the torch backend: requirements-torch.txt, pinned.
ifeq ($(TORCH),1)
install: $(STAMP) $(VENV)/.hearth-torch
else
install: $(STAMP)
endif

$(VENV)/.hearth-torch: requirements-torch.txt .ci/constraints.txt $(STAMP)
	$(PIP) install -r requirements-torch.txt -c .ci/constraints.txt
	touch $@

# The flags this ISA/CUDA choice builds llama.cpp with, one line: bench/gpu_check.sh builds with them.
cmake-args:
	@echo '$(CMAKE_ARGS)'

# Hearth's kernel tests and a short kernel bench against this ISA's build, with the venv's packages
# and that build's libraries (LLAMA_CPP_LIB_PATH), so the venv keeps its own build: CI runs it with
# ISA=avx2 after `make test`.
KERNEL_LIBS := $(VENV)/kernel-libs/$(BUILD_KEY)
kernel-test: $(VENV)/bin/python
	$(MAKE) wheel
	rm -rf $(KERNEL_LIBS) && $(PY) -m zipfile -e $$(ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl | head -1) $(KERNEL_LIBS)
	LLAMA_CPP_LIB_PATH=$(CURDIR)/$(KERNEL_LIBS)/llama_cpp/lib $(PY) -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())'
	LLAMA_CPP_LIB_PATH=$(CURDIR)/$(KERNEL_LIBS)/llama_cpp/lib $(PY) -m pytest -p no:cacheprovider tests/test_matmul_kernel.py tests/test_attention_kernel.py
	LLAMA_CPP_LIB_PATH=$(CURDIR)/$(KERNEL_LIBS)/llama_cpp/lib $(PY) bench/attention.py --kernel both --rounds 1 --repeats 3

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

SDIST := llama_cpp_python-$(LLAMA_CPP_VERSION)

wheel: $(VENV)/bin/python
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_CPP_VERSION) from source ($(CMAKE_ARGS)) with $(PATCHES): about 5 minutes on 2 cores"; \
	  src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	  $(PIP) download -q --no-cache-dir --no-deps --no-binary llama-cpp-python -d "$$src" \
	    llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  tar -xzf "$$src/$(SDIST).tar.gz" -C "$$src" && \
	  mkdir -p $(dir $(CONVERTER_CACHE)) && cp "$$src/$(CONVERTER_SRC)" $(CONVERTER_CACHE) && \
	  for p in $(PATCHES); do git -C "$$src/$(SDIST)" apply -p1 "$(CURDIR)/$$p" || exit 1; done && \
	  mkdir -p $(WHEELS) && \
	  CMAKE_ARGS='$(CMAKE_ARGS)' $(PIP) wheel --no-cache-dir --no-deps -w $(WHEELS) "$$src/$(SDIST)" || exit 1; \
	fi

$(STAMP): requirements.txt requirements-dev.txt .ci/constraints.txt $(VENV)/bin/python
	$(MAKE) wheel
	$(PIP) install --no-cache-dir --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	grep -v 'install: no-deps' requirements.txt > $(VENV)/requirements-deps.txt
	$(PIP) install -r $(VENV)/requirements-deps.txt -r requirements-dev.txt -c .ci/constraints.txt
	grep 'install: no-deps' requirements.txt | cut -d'#' -f1 | xargs $(PIP) install --no-deps
	$(PY) -m native.fetch default
	$(MAKE) ggml-converter
	rm -f $(VENV)/.hearth-* && touch $@

# llama.cpp's converter of legacy GGML model files, which native/ggml_legacy.py runs on a model's first
# load: it ships in the llama-cpp-python sdist only, not in the wheel. Extracted once per version into
# the cache (the wheel step puts it there when it builds), then copied into the venv.
CONVERTER       := $(VENV)/share/hearth/convert_llama_ggml_to_gguf.py
CONVERTER_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hearth/converters/$(LLAMA_CPP_VERSION)/convert_llama_ggml_to_gguf.py
CONVERTER_SRC   := $(SDIST)/vendor/llama.cpp/convert_llama_ggml_to_gguf.py

ggml-converter: $(VENV)/bin/python
	@if [ ! -f $(CONVERTER_CACHE) ]; then \
	  src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	  $(PIP) download -q --no-cache-dir --no-deps --no-binary llama-cpp-python -d "$$src" \
	    llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	  tar -xzf "$$src/$(SDIST).tar.gz" -C "$$src" $(CONVERTER_SRC) && \
	  mkdir -p $(dir $(CONVERTER_CACHE)) && cp "$$src/$(CONVERTER_SRC)" $(CONVERTER_CACHE) || exit 1; \
	fi
	mkdir -p $(dir $(CONVERTER)) && cp $(CONVERTER_CACHE) $(CONVERTER)

# llama.cpp's own server, the peer bench/cache.py measures Hearth against (`--peer`): stock llama.cpp from
# the same sdist's vendor/llama.cpp (no Hearth patches: it is the server its users run), built with the
# same flags, only the llama-server target (a few minutes on 2 cores), kept by a key of those flags (not
# of our patches, which it does not take).
PEER_KEY := $(shell printf '%s|%s|%s' '$(LLAMA_CPP_VERSION)' '$(CMAKE_ARGS)' "$$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)" | sha256sum | cut -c1-16)
PEER_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hearth/llama-server/$(PEER_KEY)
LLAMA_SERVER := $(PEER_DIR)/llama-server

llama-server: $(LLAMA_SERVER)
	@echo $(LLAMA_SERVER)

$(LLAMA_SERVER): | $(VENV)/bin/python
	src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	$(PIP) download -q --no-cache-dir --no-deps --no-binary llama-cpp-python -d "$$src" \
	  llama-cpp-python==$(LLAMA_CPP_VERSION) && \
	tar -xzf "$$src/$(SDIST).tar.gz" -C "$$src" && \
	cmake -S "$$src/$(SDIST)/vendor/llama.cpp" -B "$$src/build" -DCMAKE_BUILD_TYPE=Release \
	  -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF $(CMAKE_ARGS) && \
	cmake --build "$$src/build" --target llama-server -j $$(nproc) && \
	mkdir -p $(PEER_DIR) && cp "$$src/build/bin/llama-server" $@

# What bench/gpu_check.sh needs on a GPU machine without a network (the pruned sdist, wheels for
# Python 3.12, the default model), in .gpu/1, .gpu/2, ... (git-ignored), each one device call's carry;
# README.md, "Running on an NVIDIA GPU", says how to take them there.
gpu-bundle:
	$(PYTHON) bench/gpu_bundle.py make --out .gpu
	du -sh .gpu/*

constraints: install
	{ sed -n 1,2p .ci/constraints.txt; $(PIP) freeze | grep -v '^llama_cpp_python'; } > .ci/constraints.new && mv .ci/constraints.new .ci/constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
