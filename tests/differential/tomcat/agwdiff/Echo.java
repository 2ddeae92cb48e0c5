package agwdiff;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.util.Collections;
import java.util.List;

/** Answers every method and path with what it served, as the container resolved it. */
public class Echo extends HttpServlet {
    private static final List<String> STEER = List.of("x-original-url", "x-rewrite-url", "x-http-method-override",
            "x-http-method", "x-method-override", "x-forwarded-prefix", "x-forwarded-path", "x-forwarded-uri");

    private static boolean under(String path, String prefix) {
        return path.equals(prefix) || path.startsWith(prefix + "/");
    }

    private static String clean(String v) {
        return v == null ? "" : v.replace('\r', ' ').replace('\n', ' ');
    }

    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String forced = getInitParameter("area");
        // Spring's UrlPathHelper: servlet path plus path info, decoded and
        // normalized by the container, path parameters removed.
        String path = req.getServletPath() + (req.getPathInfo() == null ? "" : req.getPathInfo());
        String method = req.getMethod();
        String area;
        if (forced != null && !forced.isEmpty()) {
            area = forced;
        } else if (under(path, "/admin")) {
            area = "admin";
        } else if (under(path, "/account")) {
            area = "account";
        } else if (under(path, "/api")) {
            area = List.of("PUT", "PATCH", "DELETE").contains(method) ? "admin" : "public";
        } else if (under(path, "/public")) {
            area = "public";
        } else {
            area = "other";
        }
        StringBuilder b = new StringBuilder("agw-diff\nserver=tomcat\n");
        b.append("area=").append(area).append('\n');
        b.append("path=").append(clean(path)).append('\n');
        b.append("method=").append(method).append('\n');
        b.append("host=").append(clean(req.getServerName())).append('\n');
        b.append("rid=").append(clean(req.getHeader("x-diff-id"))).append('\n');
        for (String name : Collections.list(req.getHeaderNames())) {
            String lower = name.toLowerCase();
            if (lower.startsWith("x-authgear-")) {
                for (String v : Collections.list(req.getHeaders(name))) {
                    b.append("id.").append(lower).append('=').append(clean(v)).append('\n');
                }
            }
            if (STEER.contains(lower)) {
                b.append("steer.").append(lower).append('=').append(clean(req.getHeader(name))).append('\n');
            }
        }
        byte[] out = b.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
        resp.setContentType("text/plain");
        resp.setContentLength(out.length);
        if (!"HEAD".equalsIgnoreCase(method)) {
            resp.getOutputStream().write(out);
        }
    }
}
