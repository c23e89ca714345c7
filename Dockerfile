FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agent_orchestrator ./agent_orchestrator
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["agent-orchestrator"]
CMD ["serve"]
