package agwdiff;

import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpFilter;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletRequestWrapper;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.List;
import java.util.Locale;

/** A POST with a `_method` parameter (query or form) runs as PUT, PATCH or DELETE, as Spring's filter does. */
public class HiddenMethodFilter extends HttpFilter {
    private static final List<String> ALLOWED = List.of("PUT", "PATCH", "DELETE");

    @Override
    protected void doFilter(HttpServletRequest req, HttpServletResponse resp, FilterChain chain) throws IOException, ServletException {
        String param = "POST".equals(req.getMethod()) ? req.getParameter("_method") : null;
        if (param != null && ALLOWED.contains(param.toUpperCase(Locale.ENGLISH))) {
            String method = param.toUpperCase(Locale.ENGLISH);
            chain.doFilter(new HttpServletRequestWrapper(req) {
                @Override
                public String getMethod() {
                    return method;
                }
            }, resp);
            return;
        }
        chain.doFilter(req, resp);
    }
}
