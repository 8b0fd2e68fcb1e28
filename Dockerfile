# The lanes image, two targets from one build stage:
#   docker build --target daemon -t lanes .    `lanes worker` (ECS, Kubernetes); the default
#   docker build --target lambda -t lanes-lambda .
#       the Lambda handler worker.lambda_handler.handler on the AWS Lambda Python base image
#       (deploy/template.yaml; the API function overrides the command with scripts.api.handler)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lanes lanes
COPY markets markets
COPY worker worker
COPY scripts scripts
RUN pip install --no-cache-dir --prefix=/install .

FROM public.ecr.aws/lambda/python:3.11 AS lambda
COPY --from=build /install/lib/python3.11/site-packages ${LAMBDA_TASK_ROOT}
COPY deploy/lanes.toml ${LAMBDA_TASK_ROOT}/lanes.toml
ENV PYTHONUNBUFFERED=1 LANES_CONFIG=/var/task/lanes.toml
CMD ["worker.lambda_handler.handler"]

FROM python:3.11-slim AS daemon
RUN useradd --create-home --uid 10001 lanes
COPY --from=build /install /usr/local
COPY deploy/lanes.toml /etc/lanes/lanes.toml
USER lanes
WORKDIR /home/lanes
ENV PYTHONUNBUFFERED=1 LANES_CONFIG=/etc/lanes/lanes.toml
ENTRYPOINT ["lanes"]
CMD ["worker"]
