// The Thrift server's statement operations, whose errors reach clients as the one line the sql-dl shell
// prints (sql_dl.errors.one_line) instead of a Java stack trace. Compiled at first use with the Janino
// compiler that ships inside pyspark (no JDK needed); `sql-dl serve` installs it on the running server.
//
// HiveServer2 sends a failed statement's error in one of two ways, both built from the HiveSQLException the
// operation ends with: a synchronous ExecuteStatement (PyHive) answers with its toTStatus(), whose
// infoMessages hold every stack frame; an asynchronous one (beeline, Hive JDBC) is polled with
// GetOperationStatus, whose errorMessage is the exception's printed stack trace. Spark's own message is
// "Error running query: [CONDITION] org.apache...Exception: [CONDITION] ..." with plan dumps or a Python
// traceback. Each statement operation here replaces that exception with a OneLine exception, which prints
// and serializes as the line alone; Spark has already logged the full failure in the server's log.
// Metadata calls (GetTables, GetColumns, ...) are Spark's own operations and keep Spark's messages.
package sqldl.server;

import java.io.PrintWriter;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.hive.service.Service;
import org.apache.hive.service.cli.CLIService;
import org.apache.hive.service.cli.HiveSQLException;
import org.apache.hive.service.cli.operation.ExecuteStatementOperation;
import org.apache.hive.service.cli.operation.OperationManager;
import org.apache.hive.service.cli.session.HiveSession;
import org.apache.hive.service.cli.session.SessionManager;
import org.apache.hive.service.rpc.thrift.TStatus;
import org.apache.hive.service.rpc.thrift.TStatusCode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.hive.HiveUtils$;
import org.apache.spark.sql.hive.thriftserver.HiveThriftServer2;
import org.apache.spark.sql.hive.thriftserver.SparkExecuteStatementOperation;
import org.apache.spark.sql.hive.thriftserver.server.SparkSQLOperationManager;

public class SqlDlOperationManager extends SparkSQLOperationManager {

    private final SparkSQLOperationManager stock;
    private final Map operations;

    private SqlDlOperationManager(SparkSQLOperationManager stock) throws Exception {
        this.stock = stock;
        // SparkSQLOperationManager reads this map from its superclass's private field, which for a subclass
        // of it finds its own (still null) field instead: read OperationManager's here
        operations = (Map) privateField(OperationManager.class, "handleToOperation").get(this);
    }

    /**
     * Makes a started server's session manager create statements through this manager (`sql-dl serve` calls
     * it before it says the server is listening). Spark's session manager keeps adding each connection's
     * Spark session to the stock manager's map, which this one reads.
     */
    public static void install(HiveThriftServer2 server) throws Exception {
        Iterator services = server.getServices().iterator();
        while (services.hasNext()) {
            Service service = (Service) services.next();
            if (!(service instanceof CLIService)) continue;
            SessionManager sessions = ((CLIService) service).getSessionManager();
            // a final field with no setter: Spark sets it the same way (ReflectionUtils.setSuperField)
            Field field = privateField(SessionManager.class, "operationManager");
            field.set(sessions, new SqlDlOperationManager((SparkSQLOperationManager) field.get(sessions)));
            return;
        }
        throw new IllegalStateException("the Thrift server has no CLI service");
    }

    private static Field privateField(Class owner, String name) throws Exception {
        Field field = owner.getDeclaredField(name);
        field.setAccessible(true);
        return field;
    }

    public ConcurrentHashMap sessionToContexts() { return stock.sessionToContexts(); }

    public Map handleToOperation() { return operations; }

    /** As SparkSQLOperationManager's, with a Statement in place of a SparkExecuteStatementOperation. */
    public synchronized ExecuteStatementOperation newExecuteStatementOperation(
            HiveSession parent, String statement, Map confOverlay, boolean async, long queryTimeout) {
        SparkSession session = (SparkSession) sessionToContexts().get(parent.getSessionHandle());
        if (session == null) {
            throw new IllegalArgumentException("Session " + parent.getSessionHandle() + " has not been initialized");
        }
        Object allowed = session.sessionState().conf().getConf(HiveUtils$.MODULE$.HIVE_THRIFT_SERVER_ASYNC());
        boolean background = async && ((Boolean) allowed).booleanValue();
        Statement operation = new Statement(session, parent, statement, confOverlay, background, queryTimeout);
        handleToOperation().put(operation.getHandle(), operation);
        return operation;
    }

    /** Spark's statement operation, ending with a OneLine exception where Spark's would end with its own. */
    static final class Statement extends SparkExecuteStatementOperation {

        Statement(SparkSession session, HiveSession parent, String statement, Map confOverlay,
                  boolean background, long queryTimeout) {
            super(session, parent, statement, confOverlay, background, queryTimeout);
        }

        /** A synchronous statement's failure is thrown from here to the client. */
        public void runInternal() throws HiveSQLException {
            try {
                super.runInternal();
            } catch (Exception e) {  // Scala declares none: a failure arrives as an undeclared HiveSQLException
                throw OneLine.of(e instanceof HiveSQLException ? (HiveSQLException) e : new HiveSQLException(e));
            }
        }

        /** A background statement's failure is kept here until the client polls for it. */
        protected void setOperationException(HiveSQLException e) {
            super.setOperationException(e == null ? null : OneLine.of(e));
        }
    }

    /** A HiveSQLException that reaches a client as its message, one line, and the SQLSTATE. */
    public static final class OneLine extends HiveSQLException {

        private OneLine(String line, HiveSQLException original) {
            super(line, original.getSQLState(), original.getErrorCode(), original);
        }

        static HiveSQLException of(HiveSQLException e) {
            if (e instanceof OneLine) return e;
            // "Error running query: ..." is how Spark wraps a query's failure, which is the cause
            String message = e.getMessage() == null ? "" : e.getMessage();
            boolean wrapped = message.startsWith("Error running query: ") && e.getCause() != null;
            Throwable failure = wrapped ? e.getCause() : e;
            return new OneLine(line(failure), e);
        }

        /** What a synchronous ExecuteStatement answers: no infoMessages (the stock ones are the stack frames). */
        public TStatus toTStatus() {
            TStatus status = new TStatus(TStatusCode.ERROR_STATUS);
            status.setSqlState(getSQLState());
            status.setErrorCode(getErrorCode());
            status.setErrorMessage(getMessage());
            return status;
        }

        /** GetOperationStatus sends the printed stack trace as the error message. */
        public void printStackTrace(PrintWriter out) { out.print(getMessage()); }

        /** sql_dl.errors.one_line for a JVM exception; keep the two in step. */
        static String line(Throwable failure) {
            String text = failure.getMessage() == null ? "" : failure.getMessage();
            if (text.indexOf("Traceback (most recent call last)") >= 0) return pythonError(text);
            text = text.strip();
            String first = text.isEmpty() ? "" : text.split("\\r?\\n|\\r")[0];
            if (first.length() > 300) first = first.substring(0, 300);
            if (first.isEmpty()) return failure.getClass().getSimpleName();
            first = first.replace("[USER_RAISED_EXCEPTION] ", "");
            int state = first.indexOf(" SQLSTATE:");
            return rstrip(state >= 0 ? first.substring(0, state) : first, " ;");
        }

        /** A Python worker's failure: its traceback's last error line; sql-dl's own errors without their class. */
        private static String pythonError(String text) {
            String[] raw = text.split("\\r?\\n|\\r");
            List lines = new ArrayList();
            for (int i = 0; i < raw.length; i++) {
                if (!raw[i].strip().isEmpty() && !raw[i].startsWith(" ")) lines.add(raw[i].strip());
            }
            String found = null;
            for (int i = 0; i < lines.size(); i++) {
                String name = beforeColon((String) lines.get(i));
                name = name.substring(name.lastIndexOf('.') + 1);
                if (name.endsWith("Error") || name.endsWith("Exception")) found = (String) lines.get(i);
            }
            if (found == null) found = (String) lines.get(lines.size() - 1);
            int colon = found.indexOf(": ");
            return beforeColon(found).startsWith("sql_dl.") && colon >= 0 ? found.substring(colon + 2) : found;
        }

        private static String beforeColon(String line) {
            int colon = line.indexOf(':');
            return colon >= 0 ? line.substring(0, colon) : line;
        }

        private static String rstrip(String text, String characters) {
            int end = text.length();
            while (end > 0 && characters.indexOf(text.charAt(end - 1)) >= 0) end--;
            return text.substring(0, end);
        }
    }
}
