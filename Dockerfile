# The service (`serve`, the default) and the HTTP bridge (`bridge --host 0.0.0.0`); see
# docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agent_orchestrator ./agent_orchestrator
# /auth: where `credentials` keeps the NATS accounts (a volume takes this folder's owner).
RUN pip install . && rm -rf /app/agent_orchestrator && mkdir /auth && chown nobody /auth
USER nobody
# The bridge's port (the service itself only talks to NATS and PostgreSQL).
EXPOSE 8000
ENTRYPOINT ["agent-orchestrator"]
CMD ["serve"]
