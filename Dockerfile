# One image for both the web (gunicorn) and the training worker (python -m worker); docker-compose.yml runs both.
FROM python:3.11-slim

# PyPI's torch==2.13.0 differs per host, so take torch from an explicit index; the default is the CUDA 12.8 build
# the GPU worker needs. Build a CPU-only image with --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=app:create_app \
    MODEL_STORE=/models \
    HF_HOME=/hf-cache

WORKDIR /app

# Dependencies before the source, so a code change does not reinstall them. torch gets its own layer (it is
# gigabytes) and comes first: the later `pip install -r` then finds the pin (2.13.0+cu128 satisfies ==2.13.0)
# already met and does not swap in another build.
COPY requirements.txt .
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
RUN pip install -r requirements.txt

COPY . .

# Run unprivileged. The mount points are created here, owned by that user, because a fresh named volume takes
# its ownership from the image's directory.
RUN useradd --create-home --uid 1000 prefloop \
    && mkdir -p /models /hf-cache /app/instance \
    && chown prefloop:prefloop /models /hf-cache /app/instance
USER prefloop

EXPOSE 5000
