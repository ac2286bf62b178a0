# syntax=docker/dockerfile:1
# orderlake: one image for every orderlake role of docker-compose.yaml (Flume collector and edge
# agents, the streaming job, the Spark master and worker, the four Airflow processes, the
# dashboard, the topic step). Each container runs one program with the code `orderlake up` uses:
#     python -m orderlake.stack.foreground PROGRAM
# configured by ORDERLAKE_* variables only. The steps mirror `make setup`: Debian's OpenJDK 17
# and Maven, a virtualenv installed with constraints.txt, and the three Maven-resolved JVM
# classpaths (jvm/kafka, jvm/flume, jvm/spark), each in its own jvm/<program>/target/lib.
#
#     docker build -t orderlake .        (docker compose build does this for every service)

FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORDERLAKE_HOME=/var/lib/orderlake

# OpenJDK 17 (Kafka 4 and Spark 4.1 need 17+) and Maven, as the Makefile's system-packages target.
# Chromium is left out: only the dashboard's browser tests use it. The man1 folder works around
# the JDK's postinst on slim images, which strip /usr/share/man. Versions follow Debian 12's
# stable updates (security fixes), as `make setup` does on a developer's machine.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/orderlake

# Python first, in a layer of its own that source edits do not invalidate. The package is an
# editable install of include/ (a .pth entry), so an empty package is enough to resolve the
# dependencies here (PostgreSQL's drivers for Airflow's metadata DB among them); the real sources
# are copied below.
COPY pyproject.toml constraints.txt README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p include/orderlake && touch include/orderlake/__init__.py \
 && python3.11 -m venv .venv \
 && .venv/bin/pip install --upgrade pip \
 && .venv/bin/pip install -c constraints.txt -e . \
 && rm -rf include

# The JVM programs, exactly as the Makefile's jvm/%/target/.resolved rule resolves them (the
# Flume POM also builds orderlake's interceptor jar). Maven's cache stays out of the image.
COPY jvm/kafka/pom.xml jvm/kafka/pom.xml
COPY jvm/flume jvm/flume
COPY jvm/spark/pom.xml jvm/spark/pom.xml
# hadolint ignore=DL3003
RUN --mount=type=cache,target=/root/.m2 \
    for program in kafka flume spark; do \
      echo "resolving jvm/$program with Maven" \
   && rm -rf jvm/$program/target/lib \
   && (cd jvm/$program && mvn -q -B package dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=target/lib) \
   && touch jvm/$program/target/.resolved \
   || exit 1; \
    done

# The project itself: the shared library and the top-level folders its programs read.
COPY include include
COPY dags dags
COPY streaming streaming
COPY batch batch
COPY expectations expectations
COPY flume_conf flume_conf
COPY data data
COPY Makefile ./
# each JVM program's class-data archive: one start of it, mapped by every later start
RUN python -m orderlake.stack.jvm_archives

# Processes run as an unprivileged user that owns only ORDERLAKE_HOME; the code stays read-only.
# The folders exist in the image so named volumes mounted on them start with this ownership.
RUN useradd --create-home --user-group --uid 10001 orderlake \
 && mkdir -p /var/lib/orderlake/spool/host-1 /var/lib/orderlake/spool/host-2 \
             /var/lib/orderlake/flume/host-1 /var/lib/orderlake/flume/host-2 \
             /var/lib/orderlake/flume/collector \
 && chown -R orderlake:orderlake /var/lib/orderlake

# docker-compose runs every container with `init: true` (tini as PID 1). Stopping signals the
# program's whole process group, as supervisord's stopasgroup does in the embedded default: the
# Spark driver JVM of a Python job, Airflow's task processes.
ENV PATH=/opt/orderlake/.venv/bin:$PATH \
    TINI_KILL_PROCESS_GROUP=1
USER 10001:10001
ENTRYPOINT ["python", "-m", "orderlake.stack.foreground"]
CMD ["streaming"]
