# The lanes images, three targets from two install stages (and one runtime base):
#   docker build --target daemon -t lanes .      `lanes worker` (ECS, Kubernetes); the default
#   docker build --target api -t lanes-api .     `lanes api` on port 8080 (keys: LANES_API_KEYS)
#   docker build --target lambda -t lanes-lambda .
#       both Lambda handlers on the AWS Lambda Python base image: worker.lambda_handler.handler
#       (the command) and scripts.api.app.handler (deploy/template.yaml's API function sets it)
# The daemon gets the core install only (`pip install .`); the API and the Lambda image add
# the api extra (`pip install '.[api]'`). No image carries the demo's extras.
FROM python:3.11-slim AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lanes lanes
COPY markets markets
COPY worker worker
COPY scripts scripts

FROM source AS core-install
RUN pip install --no-cache-dir --prefix=/install .

FROM source AS api-install
RUN pip install --no-cache-dir --prefix=/install '.[api]'

FROM public.ecr.aws/lambda/python:3.11 AS lambda
COPY --from=api-install /install/lib/python3.11/site-packages ${LAMBDA_TASK_ROOT}
COPY deploy/lanes.toml ${LAMBDA_TASK_ROOT}/lanes.toml
ENV PYTHONUNBUFFERED=1 LANES_CONFIG=/var/task/lanes.toml
CMD ["worker.lambda_handler.handler"]

# What the api and daemon images share: the unprivileged user, the baked config, `lanes`.
FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 lanes
COPY deploy/lanes.toml /etc/lanes/lanes.toml
WORKDIR /home/lanes
ENV PYTHONUNBUFFERED=1 LANES_CONFIG=/etc/lanes/lanes.toml
ENTRYPOINT ["lanes"]

FROM runtime AS api
COPY --from=api-install /install /usr/local
USER lanes
EXPOSE 8080
# All interfaces: in a container, requests come from outside it (a load balancer in front).
CMD ["api", "--host", "0.0.0.0", "--port", "8080"]

FROM runtime AS daemon
COPY --from=core-install /install /usr/local
USER lanes
# LANES_METRICS_HOST: the orchestrator's probes of /metrics and /healthz come from outside the
# container (the default outside one is 127.0.0.1); LANES_METRICS_PORT turns them on.
ENV LANES_METRICS_HOST=0.0.0.0
CMD ["worker"]
