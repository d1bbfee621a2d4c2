FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY kernels ./kernels
COPY bench ./bench
RUN pip install . && useradd --create-home --uid 10001 modelgate \
  && mkdir -p /var/lib/modelgate && chown modelgate /var/lib/modelgate

COPY examples/models ./models
USER modelgate
# the journal (prediction and admin records, checkpoints, signing key, API tokens): keep it
VOLUME /var/lib/modelgate

# HTTP (V2 REST, /metrics) and gRPC, as Triton's defaults
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status != 200)"

ENTRYPOINT ["modelgate", "serve"]
CMD ["--repository", "/app/models", "--journal", "/var/lib/modelgate/journal"]
