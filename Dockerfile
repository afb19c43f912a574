# The scoring service for a packaged model: the wheel from `make run` (dist/) and nothing else.
#
#   make run
#   docker build --build-arg WHEEL=dist/credit_risk_model-1-py3-none-any.whl \
#                --build-arg PACKAGE=credit_risk_model -t credit-risk-api .
#   docker run -p 8000:8000 -e NBOPS_API_TOKEN=... credit-risk-api
#
# (No Docker engine runs where nbops is tested, so the tests exercise the same wheel and command in a
# clean virtualenv instead of this image.)
FROM python:3.11-slim

ARG WHEEL
ARG PACKAGE=credit_risk_model
ENV PACKAGE=${PACKAGE} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NBOPS_PREDICTION_LOG=/srv/prediction_log

RUN useradd --create-home --uid 10001 scorer && mkdir -p /srv/prediction_log && chown scorer /srv/prediction_log
COPY ${WHEEL} /tmp/
RUN pip install --no-cache-dir "/tmp/$(basename ${WHEEL})[serve]" && rm /tmp/*.whl

USER scorer
WORKDIR /srv
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"
CMD ["sh", "-c", "exec python -m \"$PACKAGE\" serve --host 0.0.0.0 --port 8000 --prediction-log /srv/prediction_log"]
