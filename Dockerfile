# voxtral-server on the CPU in a Debian 12 image: HTTP on 8000, Home Assistant's
# Wyoming protocol on 10300, the model mounted at /model (read-only).
#   podman build -t voxtral .                       (or docker build)
#   podman run --rm -p 8000:8000 -p 10300:10300 -v "$PWD/models/demo:/model:ro" voxtral
# BASE is any Debian 12 image: Docker Hub's debian:bookworm, or one made without a registry
# (tests/deploy/container_test.sh: mmdebstrap bookworm | podman import).
ARG BASE=debian:bookworm

FROM ${BASE} AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      g++ make cmake pkg-config libsoxr-dev libkissfft-dev nlohmann-json3-dev libcli11-dev \
      zlib1g-dev libasound2-dev libboost-dev libavformat-dev libavcodec-dev libavutil-dev libswresample-dev
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY include include
COPY src src
COPY web web
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVOXTRAL_CUDA=OFF -DVOXTRAL_TESTS=OFF -DVOXTRAL_PYTHON=OFF \
 && cmake --build build -j "$(nproc)" --target voxtral-server voxtral

FROM ${BASE}
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libsoxr0 libavformat59 libavcodec59 libavutil57 libswresample4 libasound2 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/src/voxtral-server /src/build/src/voxtral /usr/local/bin/
# Not root: the server needs no privilege.
RUN useradd --system --no-create-home voxtral
USER voxtral
EXPOSE 8000 10300
ENTRYPOINT ["voxtral-server"]
CMD ["-d", "/model", "--host", "0.0.0.0", "--port", "8000", "--wyoming", "10300"]
