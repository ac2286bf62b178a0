"""Java and the Maven-resolved jars of the three JVM programs (Kafka broker, Flume, Spark extras).

``make setup`` resolves each POM under jvm/<program>/ into jvm/<program>/target/lib; the three
never share a classpath. Missing pieces raise OrderlakeError naming the command that fixes them.

``make setup`` also dumps a class-data archive per program (stack/jvm_archives.py): the classes
one start of it loaded, already parsed and verified, which every later JVM of that program maps
instead of loading them again from the jars. The platform starts many short- and long-lived
JVMs on two cores, and class loading is a large share of each start.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from orderlake.errors import OrderlakeError
from orderlake.settings import PROJECT_ROOT

JVM_DIR = PROJECT_ROOT / "jvm"
MIN_JAVA = 17


def lib_dir(program: str) -> Path:
    """Folder holding the resolved jars of one JVM program ('kafka', 'flume' or 'spark')."""
    return JVM_DIR / program / "target" / "lib"


def jars(program: str) -> list[Path]:
    """The program's jars, or an OrderlakeError telling the user to run `make setup`."""
    found = sorted(lib_dir(program).glob("*.jar"))
    if not found:
        raise OrderlakeError(
            f"The {program} jars are missing from {lib_dir(program)}; run `make setup` "
            "(it resolves them with Maven from Maven Central)."
        )
    return found


def classpath(program: str) -> str:
    """Classpath of one program; Flume also gets orderlake's interceptor jar."""
    entries = [str(p) for p in jars(program)]
    if program == "flume":
        own = JVM_DIR / "flume" / "target" / "orderlake-flume-1.jar"
        if not own.exists():
            raise OrderlakeError(f"{own} is missing; run `make setup` to build it with Maven.")
        entries.append(str(own))
    return os.pathsep.join(entries)


def class_archive(program: str) -> Path:
    """Where ``make setup`` keeps the program's class-data archive ('kafka', 'flume', 'spark')."""
    return JVM_DIR / program / "target" / "classes.jsa"


def class_archive_options(program: str) -> list[str]:
    """JVM options mapping the program's class archive, when ``make setup`` made one. The JVM
    checks the archive against its own build and the classpath (jar sizes and times) and, on any
    mismatch, loads every class from the jars as if no archive were given; archives are only
    ever renamed into place whole (a torn one would crash the JVM)."""
    archive = class_archive(program)
    return [f"-XX:SharedArchiveFile={archive}"] if archive.is_file() else []


def java_executable(java_home: Path | None = None) -> str:
    """Path of a `java` of version 17 or newer (JAVA_HOME, then PATH)."""
    home = java_home or (Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else None)
    java = str(home / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise OrderlakeError(
            "No Java found; install OpenJDK 17 (Debian: `apt-get install openjdk-17-jdk-headless`) "
            "or set JAVA_HOME."
        )
    version = java_major_version(java)
    if version < MIN_JAVA:
        raise OrderlakeError(
            f"{java} is Java {version}; Kafka 4 and Spark 4 need Java {MIN_JAVA} or newer. "
            "Install OpenJDK 17 or point JAVA_HOME at it."
        )
    return java


@cache
def java_major_version(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise OrderlakeError(f"Could not read the version of {java}: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8" -> 8


def spark_extra_jars() -> list[str]:
    """Jars Spark needs beyond pyspark's wheel: the Kafka source and Delta.

    jvm/spark/pom.xml resolves them with their dependencies; anything pyspark already ships
    (by artifact name, whatever the version) is left out so two versions never meet on one
    classpath.
    """
    import pyspark

    shipped = {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    # RoaringBitmap's "shims" belong to the RoaringBitmap pyspark already ships
    shipped.add("shims")
    return [str(p) for p in jars("spark") if _artifact(p.name) not in shipped]


def _artifact(jar_name: str) -> str:
    """'kafka-clients-3.9.1.jar' -> 'kafka-clients'."""
    return re.sub(r"-\d[\w.\-]*\.jar$", "", jar_name)
