#!/usr/bin/env bash
# Run HERE (where PyPI is reachable), before a device session: downloads into .wheels-gpu/ the
# wheels vltool needs that the GPU machine's image lacks (it has torch, accelerate, safetensors,
# typer, rich, pyyaml, pillow; not pydantic), and the transformers / tokenizers / huggingface_hub
# this project is tested with (the image's transformers 5.17 predates APIs vltool calls). .wheels-gpu/ is kept out of git through
# .git/info/exclude; pass it in the device call's `carry`. bench/gpu_session.sh installs them there.
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.wheels-gpu/' .git/info/exclude 2>/dev/null || echo '/.wheels-gpu/' >> .git/info/exclude
rm -rf .wheels-gpu
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .wheels-gpu pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  transformers==5.24.0 tokenizers==0.23.3 huggingface_hub==2.4.0 hf-xet==1.8.0
ls -la .wheels-gpu
