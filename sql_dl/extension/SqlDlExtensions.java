package sqldl;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.apache.spark.api.python.SimplePythonFunction;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.analysis.FunctionRegistry$;
import org.apache.spark.sql.catalyst.expressions.ExpressionInfo;
import org.apache.spark.sql.execution.python.UserDefinedPythonFunction;
import org.apache.spark.sql.types.DataType;

/**
 * spark.sql.extensions=sqldl.SqlDlExtensions: sql-dl's catalog functions in every Spark session of this JVM
 * (the stock spark-sql shell, each Thrift server connection, each Spark Connect client, newSession()).
 *
 * Once per JVM it runs "python -m sql_dl.extension" (sql_dl/extension/prepare.py), which validates the catalog
 * named by spark.sqldl.catalog and writes one record per SQL function: the Arrow UDF pickled as pyspark pickles
 * it, its eval type and return type, its DESCRIBE FUNCTION texts. Each session then gets, for every record, a
 * function whose builder makes Spark's own Python UDF expression: the functions run in Python workers exactly
 * as when registered from Python. Model files are shipped by content hash (SparkContext.addFile) on first use.
 * A catalog that cannot be prepared registers nothing and says why in one line on stderr.
 */
public class SqlDlExtensions extends scala.runtime.AbstractFunction1 {

    private static final Set SHIPPED = new HashSet();
    private static List records;  // String[] per record, prepared once per JVM

    public Object apply(Object extensions) {
        List prepared = prepared();
        for (int i = 0; i < prepared.size(); i++) {
            String[] record = (String[]) prepared.get(i);
            if (record[0].equals("function")) {
                inject((SparkSessionExtensions) extensions, record[1], record, 5, new Builder(record));
            } else if (record[0].equals("expression")) {
                inject((SparkSessionExtensions) extensions, record[1], record, 3, new SqlBuilder(record[2]));
            }
        }
        return scala.runtime.BoxedUnit.UNIT;
    }

    private static synchronized List prepared() {
        if (records != null) return records;
        records = new ArrayList();
        SparkConf conf = SparkContext.getOrCreate().getConf();
        String catalog = conf.get("spark.sqldl.catalog", "models.yaml");
        try {
            File out = File.createTempFile("sql-dl-functions-", ".txt");
            out.deleteOnExit();
            List command = new ArrayList();
            command.add(python(conf));
            command.add("-m");
            command.add("sql_dl.extension");
            command.add(new File(catalog).getAbsolutePath());
            command.add(out.getAbsolutePath());
            command.add(conf.get("spark.sqldl.eventLog", ""));
            command.add(conf.get("spark.sqldl.onError", ""));
            command.add(conf.get("spark.sqldl.modelDirs", ""));
            Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
            String output = readAll(process);
            if (process.waitFor() != 0) {
                System.err.println("sql-dl: error: " + lastLine(output) + " (no sql-dl functions registered)");
                return records;
            }
            List lines = Files.readAllLines(out.toPath(), StandardCharsets.US_ASCII);
            for (int i = 0; i < lines.size(); i++) records.add(decode((String) lines.get(i)));
            out.delete();
        } catch (Exception e) {
            System.err.println("sql-dl: error: preparing " + catalog + " failed: " + e
                               + " (no sql-dl functions registered)");
            return records;
        }
        for (int i = 0; i < records.size(); i++) {
            String[] record = (String[]) records.get(i);
            if (record[0].equals("warning")) System.err.println("sql-dl: warning: " + record[1]);
        }
        return records;
    }

    /** The interpreter that prepares the functions: the driver's Python settings, as pyspark reads them. */
    private static String python(SparkConf conf) {
        String[] confs = {"spark.sqldl.python", "spark.pyspark.driver.python", "spark.pyspark.python"};
        for (int i = 0; i < confs.length; i++) {
            String value = conf.get(confs[i], "");
            if (!value.isEmpty()) return value;
        }
        String[] envs = {"PYSPARK_DRIVER_PYTHON", "PYSPARK_PYTHON"};
        for (int i = 0; i < envs.length; i++) {
            String value = System.getenv(envs[i]);
            if (value != null && !value.isEmpty()) return value;
        }
        return "python3";
    }

    /** Registers ``builder`` under ``name``, described by the four texts from ``record[text]`` on. */
    private static void inject(SparkSessionExtensions extensions, String name, String[] record, int text,
                               scala.Function1 builder) {
        FunctionIdentifier id = new FunctionIdentifier(name);
        if (FunctionRegistry$.MODULE$.builtin().functionExists(id)) {
            System.err.println("sql-dl: error: function " + name + " clashes with Spark's built-in function of "
                               + "that name; rename it in the catalog's functions:");
            return;
        }
        ExpressionInfo info = new ExpressionInfo(UserDefinedPythonFunction.class.getName(), null, name,
                                                 record[text], record[text + 1], record[text + 2],
                                                 record[text + 3], "", "", "", "python_udf");
        extensions.injectFunction(new scala.Tuple3(id, info, builder));
    }

    /** A function whose model is absent: SQL that fails with one line (raise_error), whatever its arguments. */
    static final class SqlBuilder extends scala.runtime.AbstractFunction1 implements java.io.Serializable {
        private final String sql;

        SqlBuilder(String sql) { this.sql = sql; }

        public Object apply(Object arguments) {
            return org.apache.spark.sql.catalyst.parser.CatalystSqlParser$.MODULE$.parseExpression(sql);
        }
    }

    /** Makes the Python UDF expression for one call; ships the staged model files the first time. */
    static final class Builder extends scala.runtime.AbstractFunction1 implements java.io.Serializable {
        private final String[] record;

        Builder(String[] record) { this.record = record; }

        public Object apply(Object arguments) {
            shipModels();
            SparkConf conf = SparkContext.getOrCreate().getConf();
            String workerPython = conf.get("spark.pyspark.python", System.getenv("PYSPARK_PYTHON") == null
                                           ? record[10] : System.getenv("PYSPARK_PYTHON"));
            SimplePythonFunction function = new SimplePythonFunction(
                Base64.getDecoder().decode(record[4].getBytes(StandardCharsets.US_ASCII)), new HashMap(),
                new ArrayList(), workerPython, record[9], new ArrayList(), null);
            UserDefinedPythonFunction udf = new UserDefinedPythonFunction(
                record[1], function, DataType.fromJson(record[2]), Integer.parseInt(record[3]), true,
                new ArrayList(), new ArrayList());
            return udf.builder((scala.collection.immutable.Seq) arguments);
        }
    }

    private static synchronized void shipModels() {
        SparkContext context = SparkContext.getOrCreate();
        for (int i = 0; i < records.size(); i++) {
            String[] record = (String[]) records.get(i);
            if (record[0].equals("ship") && SHIPPED.add(record[1])) context.addFile(record[1]);
        }
    }

    private static String[] decode(String line) {
        String[] fields = line.split("\t", -1);
        String[] decoded = new String[fields.length];
        decoded[0] = text(fields[0]);
        for (int i = 1; i < fields.length; i++) {
            // the pickled command (field 4 of a function record) stays base64: it is bytes, not text
            decoded[i] = (decoded[0].equals("function") && i == 4) ? fields[i] : text(fields[i]);
        }
        return decoded;
    }

    private static String text(String base64) {
        return new String(Base64.getDecoder().decode(base64), StandardCharsets.UTF_8);
    }

    private static String readAll(Process process) throws java.io.IOException {
        BufferedReader reader = new BufferedReader(new InputStreamReader(process.getInputStream(),
                                                                         StandardCharsets.UTF_8));
        StringBuilder text = new StringBuilder();
        String line;
        while ((line = reader.readLine()) != null) text.append(line).append('\n');
        return text.toString();
    }

    private static String lastLine(String text) {
        String[] lines = text.trim().split("\n");
        return lines[lines.length - 1];
    }
}
