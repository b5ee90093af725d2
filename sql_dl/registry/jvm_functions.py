"""The JVM half of sql-dl's functions (``sqldl.SqlDlExtensions``), reached from Python through py4j.

Sessions built by :func:`sql_dl.build_session` have the compiled class on the driver's class path; for a
session built elsewhere it is loaded from the same compiled folder by a class loader of its own.
"""
from __future__ import annotations

import sys
import weakref

from pyspark.sql import SparkSession
from py4j.java_gateway import JavaClass

from ..extension import EXTENSION_CLASS, extension_classes

_loaded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gateway -> class loaded by our own loader


class JvmFunctions:
    """Calls the class's static methods, whichever class loader holds it."""

    def __init__(self, spark: SparkSession):
        self.jvm = spark._jvm
        found = self.jvm
        for part in EXTENSION_CLASS.split("."):
            found = getattr(found, part)
        self.direct = found if isinstance(found, JavaClass) else None
        self.gateway = spark.sparkContext._gateway
        if self.direct is None and self.gateway not in _loaded:
            _loaded[self.gateway] = self._load()

    def _load(self):
        """The class from the compiled folder, by a URLClassLoader over Spark's own."""
        jvm, gateway = self.jvm, self.gateway
        urls = gateway.new_array(jvm.java.net.URL, 1)
        urls[0] = jvm.java.io.File(str(extension_classes())).toURI().toURL()
        parent = jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader()
        return jvm.java.net.URLClassLoader(urls, parent).loadClass(EXTENSION_CLASS)

    def _call(self, method: str, *args: object) -> object:
        if self.direct is not None:
            return getattr(self.direct, method)(*args)
        cls, jvm, gateway = _loaded[self.gateway], self.jvm, self.gateway
        types = gateway.new_array(jvm.java.lang.Class, len(args))
        values = gateway.new_array(jvm.java.lang.Object, len(args))
        for i, arg in enumerate(args):
            name = "java.lang.String" if isinstance(arg, str) else "org.apache.spark.sql.SparkSession"
            types[i] = jvm.java.lang.Class.forName(name)
            values[i] = arg
        return cls.getMethod(method, types).invoke(None, values)

    def install(self, session, catalog: str, records: str, settings: tuple) -> str:
        """Install the records into ``session``; ``settings`` (event log, onError, model directories, backend)
        are what a reload prepares them with again, with this interpreter. "" or the one line saying what could
        not be done."""
        return self._call("install", session, catalog, records, *(value or "" for value in settings),
                          sys.executable) or ""

    def reload_all(self) -> str:
        """Re-read every catalog now; the lines it logged."""
        return self._call("reloadAll") or ""

    def drain_messages(self) -> str:
        return self._call("drainMessages") or ""


def jvm_functions(spark: SparkSession) -> JvmFunctions:
    return JvmFunctions(spark)
