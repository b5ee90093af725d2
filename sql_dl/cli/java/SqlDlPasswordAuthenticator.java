// HiveServer2 password check for `sql-dl serve --auth password`: compiled at first use with the
// Janino compiler that ships inside pyspark (no JDK needed), loaded by hive.server2.authentication=CUSTOM.
// The password file (system property sqldl.password.file) holds lines user:salt:sha256hex(salt + password),
// written by `sql-dl passwd`. It is re-read on every login, so users can be added without a restart.
package sqldl.auth;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.util.List;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;

public class SqlDlPasswordAuthenticator implements PasswdAuthenticationProvider {
    public void Authenticate(String user, String password) throws AuthenticationException {
        String file = System.getProperty("sqldl.password.file");
        if (file == null || user == null || password == null) {
            throw new AuthenticationException("authentication failed");
        }
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            List lines = Files.readAllLines(Paths.get(file), StandardCharsets.UTF_8);
            for (int i = 0; i < lines.size(); i++) {
                String line = ((String) lines.get(i)).trim();
                int colon = line.indexOf(':');
                if (colon <= 0 || !line.substring(0, colon).equals(user)) continue;
                String[] parts = line.substring(colon + 1).split(":");
                if (parts.length != 2) continue;
                byte[] hash = digest.digest((parts[0] + password).getBytes(StandardCharsets.UTF_8));
                StringBuilder hex = new StringBuilder();
                for (int j = 0; j < hash.length; j++) {
                    hex.append(String.format("%02x", new Object[] {Integer.valueOf(hash[j] & 0xff)}));
                }
                byte[] expected = parts[1].getBytes(StandardCharsets.UTF_8);
                if (MessageDigest.isEqual(hex.toString().getBytes(StandardCharsets.UTF_8), expected)) return;
            }
        } catch (Exception e) {
            throw new AuthenticationException("authentication failed");
        }
        throw new AuthenticationException("authentication failed for user " + user);
    }
}
