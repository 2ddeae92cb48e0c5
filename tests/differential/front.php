<?php
// The PHP app behind both Apache (mod_php) and PHP's built-in server: a
// front controller as Laminas (and Symfony before 2.x dropped it) detects
// the request URI, preferring the IIS URL Rewrite headers X-Original-URL
// and X-Rewrite-URL, and Symfony's method override (X-HTTP-Method-Override
// or `_method` on a POST). Domain routing serves the admin site for its
// host, as Laravel's Route::domain does. Every answer says what was served.

$uri = $_SERVER['HTTP_X_ORIGINAL_URL'] ?? $_SERVER['HTTP_X_REWRITE_URL'] ?? $_SERVER['REQUEST_URI'] ?? '/';
$raw_path = parse_url($uri, PHP_URL_PATH);
$path = rawurldecode(is_string($raw_path) ? $raw_path : '/');

$method = strtoupper($_SERVER['REQUEST_METHOD'] ?? 'GET');
if ($method === 'POST') {
    $override = $_SERVER['HTTP_X_HTTP_METHOD_OVERRIDE'] ?? $_POST['_method'] ?? $_GET['_method'] ?? null;
    if (is_string($override) && $override !== '') {
        $method = strtoupper($override);
    }
}

$host = strtolower(preg_replace('/:\d+$/', '', $_SERVER['HTTP_HOST'] ?? ''));
$vhost = $_SERVER['AGW_VHOST'] ?? getenv('AGW_VHOST');

function under(string $path, string $prefix): bool
{
    return $path === $prefix || strncmp($path, $prefix . '/', strlen($prefix) + 1) === 0;
}

if ($vhost === 'admin' || $host === 'admin.example.test') {
    $area = 'admin';
} elseif (under($path, '/admin')) {
    $area = 'admin';
} elseif (under($path, '/account')) {
    $area = 'account';
} elseif (under($path, '/api')) {
    $area = in_array($method, ['PUT', 'PATCH', 'DELETE'], true) ? 'admin' : 'public';
} elseif (under($path, '/public')) {
    $area = 'public';
} else {
    $area = 'other';
}

$steer = ['HTTP_X_ORIGINAL_URL', 'HTTP_X_REWRITE_URL', 'HTTP_X_HTTP_METHOD_OVERRIDE', 'HTTP_X_HTTP_METHOD',
    'HTTP_X_METHOD_OVERRIDE', 'HTTP_X_FORWARDED_PREFIX', 'HTTP_X_FORWARDED_PATH', 'HTTP_X_FORWARDED_URI'];
$clean = fn($v) => str_replace(["\r", "\n"], ' ', (string) $v);

header('Content-Type: text/plain');
$out = "agw-diff\n";
$out .= 'server=' . (getenv('AGW_SERVER') ?: 'php') . "\n";
$out .= "area=$area\n";
$out .= 'path=' . $clean($path) . "\n";
$out .= "method=$method\n";
$out .= 'host=' . $clean($host) . "\n";
$out .= 'rid=' . $clean($_SERVER['HTTP_X_DIFF_ID'] ?? '') . "\n";
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, 'HTTP_X_AUTHGEAR_', 16) === 0) {
        $out .= "id.$k=" . $clean($v) . "\n";
    }
}
foreach ($steer as $k) {
    if (isset($_SERVER[$k])) {
        $out .= "steer.$k=" . $clean($_SERVER[$k]) . "\n";
    }
}
echo $out;
