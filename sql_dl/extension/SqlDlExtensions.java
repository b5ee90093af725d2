package sqldl;

import java.io.BufferedReader;
import java.io.File;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.lang.ref.WeakReference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.apache.spark.api.python.SimplePythonFunction;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.analysis.FunctionRegistry$;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.ExpressionInfo;
import org.apache.spark.sql.catalyst.expressions.PythonUDF;
import org.apache.spark.sql.catalyst.parser.CatalystSqlParser$;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.execution.adaptive.AdaptiveSparkPlanExec;
import org.apache.spark.sql.execution.adaptive.QueryStageExec;
import org.apache.spark.sql.execution.python.ArrowEvalPythonExec;
import org.apache.spark.sql.execution.python.UserDefinedPythonFunction;
import org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionEnd;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.util.AccumulatorV2;

/**
 * sql-dl's catalog functions in Spark sessions, following the catalog file as it changes.
 *
 * As spark.sql.extensions=sqldl.SqlDlExtensions it serves every session of the JVM (the stock spark-sql shell,
 * each Thrift server connection, each Spark Connect client); sql-dl's Python registration (register_catalog)
 * installs the same functions into one session through install(). Either way the functions come from records
 * that "python -m sql_dl.extension" (sql_dl/registry/records.py) writes: each version of each entry as a
 * pickled Arrow UDF per function kind, each SQL name with its target, and the refs ('NAME', 'NAME@ALIAS',
 * 'NAME@VERSION') the model-as-argument functions (ml_predict, ...) accept.
 *
 * A Store holds one catalog's current records. Every SQL name is a slot: its builder reads the Store's
 * records when a query is planned, so a moved alias is followed by the next query while a planned query keeps
 * the version it was planned with. A watcher thread re-prepares a catalog whose file changed; a catalog that no
 * longer validates leaves the previous records serving, and the one-line reason is logged. An audit listener
 * writes one JSON line per query and function that ran a model (query id, user, model, version, sha256, rows).
 */
public class SqlDlExtensions extends scala.runtime.AbstractFunction1 {

    static final Map STORES = new HashMap();  // store key -> Store
    static final List MESSAGES = new ArrayList();  // lines for the Python surfaces to print (drainMessages)
    static final Set SHIPPED = new HashSet();
    static final Map LINEAGE = new LinkedHashMap();  // PythonUDF result id -> String[] {audit file, json fields}
    static final Map USERS = new LinkedHashMap();  // Thrift statement (job group) -> user name
    static volatile Store VIEW_OWNER;  // the catalog installed last: default.sql_dl_models shows its rows
    static Thread watcher;
    static boolean listening;

    /** spark.sql.extensions entry point: the catalog named by spark.sqldl.catalog, in every session. */
    public Object apply(Object extensions) {
        SparkConf conf = SparkContext.getOrCreate().getConf();
        String[] settings = {conf.get("spark.sqldl.eventLog", ""), conf.get("spark.sqldl.onError", ""),
                             conf.get("spark.sqldl.modelDirs", ""), conf.get("spark.sqldl.backend", "")};
        Store store = store(conf, conf.get("spark.sqldl.catalog", "models.yaml"), null, settings, python(conf));
        SparkSessionExtensions ext = (SparkSessionExtensions) extensions;
        if (store.state != null) {
            Iterator names = store.state.functions.keySet().iterator();
            while (names.hasNext()) {
                String name = (String) names.next();
                if (!builtin(name)) ext.injectFunction(new scala.Tuple3(new FunctionIdentifier(name),
                                                                        store.info(name), new Slot(store, name)));
            }
        }
        ext.injectTableFunction(new scala.Tuple3(new FunctionIdentifier(Store.TABLE), tableInfo(),
                                                 new TableSlot(store)));
        ext.injectCheckRule(new Tracker(store));
        return scala.runtime.BoxedUnit.UNIT;
    }

    /**
     * Python's register_catalog: install the records at ``recordsFile`` (already prepared by the caller) into
     * ``session``, and keep the default.sql_dl_models view in step with them. Returns "" or the error line.
     */
    public static String install(SparkSession session, String catalog, String recordsFile, String eventLog,
                                 String onError, String modelDirs, String backend, String python) {
        SparkConf conf = session.sparkContext().getConf();
        Store store = store(conf, catalog, recordsFile, new String[] {eventLog, onError, modelDirs, backend},
                            python);
        if (store.state == null) return store.lastError;
        store.viewSession = new WeakReference(session);
        store.track(session);
        store.registerIntoLiveSessions(null);
        VIEW_OWNER = store;
        return store.refreshView();
    }

    /** Re-prepare every catalog now (sql-dl serve on SIGHUP); returns the lines it logged. */
    public static String reloadAll() {
        List stores;
        synchronized (SqlDlExtensions.class) { stores = new ArrayList(STORES.values()); }
        for (int i = 0; i < stores.size(); i++) ((Store) stores.get(i)).reload();
        return drainMessages();
    }

    /** What the stores logged since the last call (reloads, refused catalogs), one line each. */
    public static synchronized String drainMessages() {
        StringBuilder text = new StringBuilder();
        for (int i = 0; i < MESSAGES.size(); i++) text.append(MESSAGES.get(i)).append('\n');
        MESSAGES.clear();
        return text.toString();
    }

    static synchronized void message(String line) {
        System.err.println(line);
        org.apache.logging.log4j.LogManager.getLogger("sql_dl").warn(line);
        MESSAGES.add(line);
        if (MESSAGES.size() > 100) MESSAGES.remove(0);
    }

    /**
     * The Store for ``catalog`` prepared with ``settings`` (event log, onError, model directories, backend:
     * what the preparing Python is given), made on first use: from ``recordsFile``, or by running ``python``'s
     * preparer.
     */
    static synchronized Store store(SparkConf conf, String catalog, String recordsFile, String[] settings,
                                    String python) {
        String path = new File(catalog).getAbsolutePath();
        String key = path + "\n" + String.join("\n", settings);
        Store store = (Store) STORES.get(key);
        if (store == null) {
            store = new Store(path, python, settings, auditFile(conf, settings[0]));
            STORES.put(key, store);
            store.load(recordsFile);
            startWatcher(Double.parseDouble(conf.get("spark.sqldl.reloadSeconds", "1")));
            listen(SparkContext.getOrCreate());
        } else if (recordsFile != null) {
            store.load(recordsFile);
        }
        return store;
    }

    /** Where the audit lines go: spark.sqldl.auditLog, else the event log, else audit.jsonl in sql-dl's logs. */
    static String auditFile(SparkConf conf, String eventLog) {
        String audit = conf.get("spark.sqldl.auditLog", eventLog);
        String logs = System.getProperty("sql_dl.log.dir");
        return !audit.isEmpty() ? audit : logs != null ? new File(logs, "audit.jsonl").getPath() : "";
    }

    /** The interpreter that prepares the functions: the driver's Python settings, as pyspark reads them. */
    static String python(SparkConf conf) {
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

    /** A session's own function (system.session.NAME, as Python UDFs are), not one of the extension's. */
    static FunctionIdentifier temporary(String name) {
        return new FunctionIdentifier(name, new scala.Some("session"), new scala.Some("system"));
    }

    static boolean builtin(String name) {
        return FunctionRegistry$.MODULE$.builtin().functionExists(new FunctionIdentifier(name));
    }

    static ExpressionInfo tableInfo() {
        return new ExpressionInfo("sqldl.SqlDlExtensions", null, Store.TABLE,
            "_FUNC_() - one row per version of every catalog model: name, version, aliases, functions, input, "
            + "label_count, feature_size, precision, device, sha256, source, random_weights, available, "
            + "unavailable_reason, onnx.", "", "\n    Examples:\n      > SELECT * FROM _FUNC_();\n  ", "", "", "",
            "", "java_udf");
    }

    static synchronized void startWatcher(double seconds) {
        if (watcher != null || seconds <= 0) return;
        watcher = new Thread(new Watcher((long) (seconds * 1000)), "sql-dl catalog watcher");
        watcher.setDaemon(true);
        watcher.start();
    }

    static synchronized void listen(SparkContext context) {
        if (listening) return;
        listening = true;
        context.addSparkListener(new Audit());
    }

    /** A SQL function whose model cannot run: fails with one line when a row meets it, typed as asked. */
    static Expression failing(String message, String type) {
        String literal = message.replace("\\", "\\\\").replace("'", "\\'");
        String sql = "raise_error('" + literal + "')";
        return CatalystSqlParser$.MODULE$.parseExpression(type.isEmpty() ? sql : "CAST(" + sql + " AS " + type + ")");
    }

    /** One catalog's records: what each SQL name runs now. Replaced whole on reload (readers never lock). */
    static final class State {
        final Map udfs = new HashMap();  // key (NAME@VERSION/kind) -> udf record
        final Map fails = new HashMap();  // key -> SQL failing with why the model is unavailable
        final Map functions = new LinkedHashMap();  // SQL name -> function record
        final Map refs = new HashMap();  // kind \t ref -> key
        final List ships = new ArrayList();
        final List warnings = new ArrayList();
        final Set models = new TreeSet();  // entry names, for "unknown model" messages
        String table = "";

        State(List lines) {
            for (int i = 0; i < lines.size(); i++) {
                String[] r = decode((String) lines.get(i));
                if (r[0].equals("udf")) udfs.put(r[1], r);
                else if (r[0].equals("fail")) fails.put(r[1], r[2]);
                else if (r[0].equals("function")) functions.put(r[1], r);
                else if (r[0].equals("ref")) {
                    refs.put(r[1] + "\t" + r[2], r[3]);
                    if (r[2].indexOf('@') < 0) models.add(r[2]);
                } else if (r[0].equals("ship")) ships.add(r[1]);
                else if (r[0].equals("table")) table = r[1];
                else if (r[0].equals("warning")) warnings.add(r[1]);
            }
        }
    }

    static final class Store {
        static final String TABLE = "sql_dl_models";
        final String catalog, python, audit;
        final String[] settings;
        volatile State state;
        String lastError = "";
        long stamp;
        final List sessions = new ArrayList();  // WeakReference to each session holding these functions
        WeakReference viewSession;  // the session that keeps default.sql_dl_models (Python registration)

        Store(String catalog, String python, String[] settings, String audit) {
            this.catalog = catalog;
            this.python = python;
            this.settings = settings;
            this.audit = audit;
        }

        long stamp() {
            File file = new File(catalog);
            return file.lastModified() * 31 + file.length();
        }

        /** Records from ``recordsFile``, or prepared by a Python subprocess when it is null. */
        void load(String recordsFile) {
            long before = stamp();
            try {
                State next = new State(recordsFile != null ? read(new File(recordsFile)) : prepare());
                boolean first = state == null;
                state = next;
                stamp = before;
                lastError = "";
                for (int i = 0; i < next.warnings.size(); i++) message("sql-dl: warning: " + next.warnings.get(i));
                if (!first && recordsFile == null) message("sql-dl: catalog " + catalog + " reloaded: " + next.models.size() + " models, "
                                    + next.functions.size() + " functions");
            } catch (Exception e) {
                stamp = before;
                lastError = e.getMessage();
                message("sql-dl: error: " + lastError + (state == null ? " (no sql-dl functions registered)"
                                                         : " (the previous catalog keeps serving)"));
            }
        }

        List prepare() throws Exception {
            File out = File.createTempFile("sql-dl-functions-", ".txt");
            try {
                List command = new ArrayList();
                command.add(python);
                command.add("-m");
                command.add("sql_dl.extension");
                command.add(catalog);
                command.add(out.getAbsolutePath());
                for (int i = 0; i < settings.length; i++) command.add(settings[i]);
                Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
                String output = readAll(process);
                if (process.waitFor() != 0) throw new Exception(lastLine(output));
                return read(out);
            } finally {
                out.delete();
            }
        }

        /** Reload when the catalog file changed since it was last read (the watcher calls this). */
        void reloadIfChanged() {
            if (new File(catalog).isFile() && stamp() != stamp) reload();
        }

        /** Prepare again; on success, bring the sessions and the view up to date. Spark is called with no
         *  lock of ours held: planning holds Spark's catalog lock and then reads this store. */
        void reload() {
            State before;
            synchronized (this) {
                before = state;
                load(null);
            }
            if (state != before) {
                registerIntoLiveSessions(before);
                String failed = refreshView();
                if (!failed.isEmpty()) message("sql-dl: warning: " + failed);
            }
        }

        ExpressionInfo info(String name) {
            String[] f = (String[]) state.functions.get(name);
            return new ExpressionInfo(UserDefinedPythonFunction.class.getName(), null, name, f[5], f[6], f[7],
                                      f[8], "", "", "", "python_udf");
        }

        void track(SparkSession session) {
            boolean known = false;
            synchronized (this) {
                for (Iterator it = sessions.iterator(); it.hasNext();) {
                    Object seen = ((WeakReference) it.next()).get();
                    if (seen == null) it.remove();
                    else if (seen == session) known = true;
                }
                if (!known) sessions.add(new WeakReference(session));
            }
            registerInto(session, null);
        }

        /**
         * Every current SQL name (and the models table) into ``session`` as its own functions, except the
         * names it already has from the extension (those slots follow reloads themselves): so names new since
         * the session started are there too.
         */
        void registerInto(SparkSession session, State before) {
            State current = state;
            if (current == null) return;
            org.apache.spark.sql.catalyst.analysis.FunctionRegistry registry =
                session.sessionState().functionRegistry();
            Iterator names = current.functions.keySet().iterator();
            while (names.hasNext()) {
                String name = (String) names.next();
                // after a reload only the new names: a name another catalog registered later stays its
                if (before != null && before.functions.containsKey(name)) continue;
                if (!registry.functionExists(FunctionRegistry$.MODULE$.builtinFunctionIdentifier(name))) {
                    registry.registerFunction(temporary(name), info(name), new Slot(this, name));
                }
            }
            org.apache.spark.sql.catalyst.analysis.TableFunctionRegistry tables =
                session.sessionState().tableFunctionRegistry();
            if (before == null && !tables.functionExists(FunctionRegistry$.MODULE$.builtinFunctionIdentifier(TABLE))) {
                tables.registerFunction(temporary(TABLE), tableInfo(), new TableSlot(this));
            }
        }

        /** Into every live session: all names, or with ``before``, the names it did not have. */
        void registerIntoLiveSessions(State before) {
            List live = new ArrayList();
            synchronized (this) {
                for (Iterator it = sessions.iterator(); it.hasNext();) {
                    Object session = ((WeakReference) it.next()).get();
                    if (session == null) it.remove();
                    else live.add(session);
                }
            }
            for (int i = 0; i < live.size(); i++) registerInto((SparkSession) live.get(i), before);
        }

        /** CREATE OR REPLACE VIEW default.sql_dl_models over the current rows; "" or why it could not. */
        String refreshView() {
            SparkSession session = viewSession == null ? null : (SparkSession) viewSession.get();
            if (session == null || VIEW_OWNER != this || state == null || state.table.isEmpty()) return "";
            try {
                session.sql("CREATE OR REPLACE VIEW default." + TABLE + " AS " + state.table).collect();
                return "";
            } catch (Exception e) {
                return "the view default." + TABLE + " could not be made (" + firstLine(e.getMessage())
                       + "); SELECT * FROM " + TABLE + "() lists the models";
            }
        }

        void ship() {
            SparkContext context = SparkContext.getOrCreate();
            List ships = state.ships;
            for (int i = 0; i < ships.size(); i++) {
                String path = (String) ships.get(i);
                synchronized (SHIPPED) {
                    if (SHIPPED.add(path)) context.addFile(path);
                }
            }
        }
    }

    /** The builder of one SQL name: what it runs is looked up when a query is planned. */
    static final class Slot extends scala.runtime.AbstractFunction1 implements java.io.Serializable {
        private final transient Store store;
        private final String name;

        Slot(Store store, String name) {
            this.store = store;
            this.name = name;
        }

        public Object apply(Object arguments) {
            State state = store.state;
            String[] f = (String[]) state.functions.get(name);
            if (f == null) {
                return failing(name + " is no longer in the catalog " + store.catalog
                               + " (its entry was removed or renamed)", "");
            }
            scala.collection.immutable.Seq args = (scala.collection.immutable.Seq) arguments;
            String key = f[3];
            if (key.isEmpty()) {  // a model-as-argument function: the first argument names the model
                String ref = args.isEmpty() ? null : constant((Expression) args.head());
                if (ref == null) {
                    return failing(name + ": the first argument must be a constant STRING naming the model: "
                                   + "'NAME', 'NAME@ALIAS' or 'NAME@VERSION'", f[4]);
                }
                key = (String) state.refs.get(f[2] + "\t" + ref.trim().toLowerCase(Locale.ROOT));
                if (key == null) {
                    return failing(name + ": no model '" + ref + "' with a " + f[2] + " function; models: "
                                   + String.join(", ", state.models) + " (NAME@ALIAS and NAME@VERSION name "
                                   + "others: SELECT * FROM " + Store.TABLE + ")", f[4]);
                }
                args = (scala.collection.immutable.Seq) args.tail();
            }
            String fail = (String) state.fails.get(key);
            if (fail != null) return CatalystSqlParser$.MODULE$.parseExpression(fail);
            String[] u = (String[]) state.udfs.get(key);
            store.ship();
            Expression expression = udf(u).builder(args);
            remember(expression, u[7]);
            return expression;
        }

        UserDefinedPythonFunction udf(String[] u) {
            SparkConf conf = SparkContext.getOrCreate().getConf();
            String workerPython = conf.get("spark.pyspark.python", System.getenv("PYSPARK_PYTHON") == null
                                           ? u[6] : System.getenv("PYSPARK_PYTHON"));
            SimplePythonFunction function = new SimplePythonFunction(
                Base64.getDecoder().decode(u[4].getBytes(StandardCharsets.US_ASCII)), new HashMap(),
                new ArrayList(), workerPython, u[5], new ArrayList(), null);
            return new UserDefinedPythonFunction(name, function, DataType.fromJson(u[2]), Integer.parseInt(u[3]),
                                                 true, new ArrayList(), new ArrayList());
        }

        /** The lineage of a planned call, for the audit line written when its query ends. */
        void remember(Expression expression, String lineage) {
            if (!(expression instanceof PythonUDF) || store.audit.isEmpty() || lineage.isEmpty()) return;
            String group = SparkContext.getOrCreate().getLocalProperty("spark.jobGroup.id");
            String fields = "\"function\": " + json(name) + ", " + lineage
                            + (group == null ? "" : ", \"statement\": " + json(group));
            synchronized (LINEAGE) {
                LINEAGE.put(Long.valueOf(((PythonUDF) expression).resultId().id()),
                            new String[] {store.audit, fields, group});
                if (LINEAGE.size() > 10000) LINEAGE.remove(LINEAGE.keySet().iterator().next());
            }
        }
    }

    static String constant(Expression expression) {
        if (!expression.foldable()) return null;
        Object value = expression.eval(null);
        return value == null ? null : value.toString();
    }

    /** sql_dl_models(): the current catalog's rows (a VALUES query the analyzer resolves). */
    static final class TableSlot extends scala.runtime.AbstractFunction1 implements java.io.Serializable {
        private final transient Store store;

        TableSlot(Store store) { this.store = store; }

        public Object apply(Object arguments) {
            return CatalystSqlParser$.MODULE$.parsePlan(store.state.table);
        }
    }

    /** Sees each session the extension serves when its analyzer is built, so reloads reach it. */
    static final class Tracker extends scala.runtime.AbstractFunction1 implements java.io.Serializable {
        private final transient Store store;

        Tracker(Store store) { this.store = store; }

        public Object apply(Object session) {
            store.track((SparkSession) session);
            return new NoCheck();
        }
    }

    static final class NoCheck extends scala.runtime.AbstractFunction1 implements java.io.Serializable {
        public Object apply(Object plan) { return scala.runtime.BoxedUnit.UNIT; }
    }

    static final class Watcher implements Runnable {
        private final long millis;

        Watcher(long millis) { this.millis = millis; }

        public void run() {
            while (true) {
                try {
                    Thread.sleep(millis);
                    List stores;
                    synchronized (SqlDlExtensions.class) { stores = new ArrayList(STORES.values()); }
                    for (int i = 0; i < stores.size(); i++) ((Store) stores.get(i)).reloadIfChanged();
                } catch (InterruptedException e) {
                    return;
                } catch (Throwable e) {
                    message("sql-dl: error: reloading the catalog failed: " + firstLine(String.valueOf(e)));
                }
            }
        }
    }

    /** One JSON line per query and sql-dl function call that ran: who, which model version, how many rows. */
    static final class Audit extends SparkListener {
        public void onOtherEvent(SparkListenerEvent event) {
            try {
                if (event instanceof SparkListenerSQLExecutionEnd) ended((SparkListenerSQLExecutionEnd) event);
                else if (event.getClass().getName().endsWith("SparkListenerThriftServerOperationStart")) started(event);
            } catch (Throwable e) {
                message("sql-dl: warning: the audit line could not be written: " + firstLine(String.valueOf(e)));
            }
        }

        void started(Object event) throws Exception {
            String group = String.valueOf(event.getClass().getMethod("groupId").invoke(event));
            String user = String.valueOf(event.getClass().getMethod("userName").invoke(event));
            synchronized (USERS) {
                USERS.put(group, user);
                if (USERS.size() > 10000) USERS.remove(USERS.keySet().iterator().next());
            }
        }

        void ended(SparkListenerSQLExecutionEnd end) throws Exception {
            if (end.qe() == null) return;
            List calls = new ArrayList();
            walk(end.qe().executedPlan(), calls);
            String query = end.queryId().isDefined() ? end.queryId().get().toString() : "";
            String status = end.errorMessage().isDefined() && !end.errorMessage().get().toString().isEmpty()
                            ? "failed" : "succeeded";
            for (int i = 0; i < calls.size(); i++) {
                Object[] call = (Object[]) calls.get(i);
                String[] lineage;
                synchronized (LINEAGE) { lineage = (String[]) LINEAGE.get(call[0]); }
                if (lineage == null) continue;
                String user;
                synchronized (USERS) { user = lineage[2] == null ? null : (String) USERS.get(lineage[2]); }
                if (user == null) user = SparkContext.getOrCreate().sparkUser();
                String line = "{\"event\": \"query\", \"time\": " + end.time() + ", \"query_id\": " + json(query)
                              + ", \"execution_id\": " + end.executionId() + ", \"user\": " + json(user) + ", "
                              + lineage[1] + ", \"rows\": " + call[1] + ", \"status\": \"" + status + "\"}\n";
                append(lineage[0], line);
            }
        }

        /** Every Arrow Python UDF in the plan, with the rows it returned: (result id, rows). */
        void walk(Object node, List calls) {
            if (node instanceof AdaptiveSparkPlanExec) {
                walk(((AdaptiveSparkPlanExec) node).executedPlan(), calls);
                return;
            }
            if (node instanceof QueryStageExec) {
                walk(((QueryStageExec) node).plan(), calls);
                return;
            }
            if (node instanceof ArrowEvalPythonExec) {
                ArrowEvalPythonExec exec = (ArrowEvalPythonExec) node;
                scala.Option metric = exec.metrics().get("pythonNumRowsReceived");
                long rows = -1L;
                // through AccumulatorV2: Janino cannot compile SQLMetric's own value() (a bridged primitive)
                if (metric.isDefined()) rows = ((Number) ((AccumulatorV2) metric.get()).value()).longValue();
                scala.collection.Iterator udfs = exec.udfs().iterator();
                while (udfs.hasNext()) {
                    PythonUDF udf = (PythonUDF) udfs.next();
                    calls.add(new Object[] {Long.valueOf(udf.resultId().id()), Long.valueOf(rows)});
                }
            }
            if (node instanceof SparkPlan) {
                scala.collection.Iterator children = ((SparkPlan) node).children().iterator();
                while (children.hasNext()) walk(children.next(), calls);
            }
        }
    }

    static synchronized void append(String file, String line) throws java.io.IOException {
        Writer writer = new OutputStreamWriter(new FileOutputStream(file, true), StandardCharsets.UTF_8);
        try {
            writer.write(line);
        } finally {
            writer.close();
        }
    }

    static String json(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '"' || c == '\\') out.append('\\').append(c);
            else if (c < 0x20) out.append(String.format("\\u%04x", new Object[] {Integer.valueOf(c)}));
            else out.append(c);
        }
        return out.append('"').toString();
    }

    static List read(File file) throws java.io.IOException {
        return Files.readAllLines(file.toPath(), StandardCharsets.US_ASCII);
    }

    static String[] decode(String line) {
        String[] fields = line.split("\t", -1);
        String[] decoded = new String[fields.length];
        decoded[0] = text(fields[0]);
        for (int i = 1; i < fields.length; i++) {
            // the pickled command (field 4 of a udf record) stays base64: it is bytes, not text
            decoded[i] = (decoded[0].equals("udf") && i == 4) ? fields[i] : text(fields[i]);
        }
        return decoded;
    }

    static String text(String base64) {
        return new String(Base64.getDecoder().decode(base64), StandardCharsets.UTF_8);
    }

    static String readAll(Process process) throws java.io.IOException {
        BufferedReader reader = new BufferedReader(new InputStreamReader(process.getInputStream(),
                                                                         StandardCharsets.UTF_8));
        StringBuilder text = new StringBuilder();
        String line;
        while ((line = reader.readLine()) != null) text.append(line).append('\n');
        return text.toString();
    }

    static String lastLine(String text) {
        String[] lines = text.trim().split("\n");
        return lines[lines.length - 1];
    }

    static String firstLine(String text) {
        return text == null ? "" : text.trim().split("\n")[0];
    }
}
