# The lanes worker image: `lanes worker` by default; the same image serves the
# Lambda handler (worker.lambda_handler.handler) through the AWS Lambda runtime
# interface client.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lanes lanes
COPY markets markets
COPY worker worker
COPY scripts scripts
RUN pip install --no-cache-dir --prefix=/install . awslambdaric

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 lanes
COPY --from=build /install /usr/local
USER lanes
WORKDIR /home/lanes
ENV PYTHONUNBUFFERED=1 LANES_CONFIG=/etc/lanes/lanes.toml
# Lambda: override the command with
#   ["python", "-m", "awslambdaric", "worker.lambda_handler.handler"]
ENTRYPOINT ["lanes"]
CMD ["worker"]
