//! The real upstream servers, started as child processes on ports picked at
//! run time from the configs and apps in this directory. Each runs in its
//! own process group, killed with it when dropped. `.ci/install-servers.sh`
//! installs them.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The servers, in table order.
pub const ALL: [&str; 7] = ["nginx", "apache", "php", "express", "werkzeug", "hypercorn", "tomcat"];

/// Where the install script puts the Python venv and the npm packages.
pub fn prefix() -> PathBuf {
    PathBuf::from(std::env::var("AGW_DIFF_PREFIX").unwrap_or_else(|_| "/opt/agw-diff".into()))
}

/// This directory: the apps and config templates.
pub fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

/// A running server.
pub struct Running {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub version: String,
    log: PathBuf,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this harness created for
        // the child (its pid is the group id): its workers die with it.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Running {
    /// The last lines the server logged, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Why a server is not running.
pub enum NotRunning {
    /// Not installed: the install script was not run.
    Missing(String),
    /// Installed but did not start or answer.
    Broken(String),
}

/// A free loopback port: bound, read, closed, handed to the server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

fn read_src(name: &str) -> Result<String, NotRunning> {
    std::fs::read_to_string(src_dir().join(name)).map_err(|e| NotRunning::Broken(format!("reading {name}: {e}")))
}

fn write(path: &Path, text: &str) -> Result<(), NotRunning> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| NotRunning::Broken(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(|e| NotRunning::Broken(format!("{}: {e}", path.display())))
}

fn mkdirs(dir: &Path, names: &[&str]) -> Result<(), NotRunning> {
    for n in names {
        std::fs::create_dir_all(dir.join(n)).map_err(|e| NotRunning::Broken(format!("{n}: {e}")))?;
    }
    Ok(())
}

/// Runs a short command and returns its stdout and stderr, trimmed.
fn output(program: &str, args: &[&str]) -> Result<String, NotRunning> {
    let o = Command::new(program).args(args).output().map_err(|e| NotRunning::Missing(format!("{program}: {e}")))?;
    if !o.status.success() {
        return Err(NotRunning::Missing(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())));
    }
    Ok(format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)).trim().to_owned())
}

fn need(path: &Path) -> Result<(), NotRunning> {
    if path.exists() {
        Ok(())
    } else {
        Err(NotRunning::Missing(format!("{} is not there", path.display())))
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

/// What to start: program, arguments, environment, working directory.
struct Launch {
    program: String,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    cwd: PathBuf,
    version: String,
}

/// Writes `name`'s files under `dir` and says how to start it on `port`.
fn prepare(name: &str, dir: &Path, port: u16) -> Result<Launch, NotRunning> {
    let p = port.to_string();
    let d = dir.display().to_string();
    let pre = prefix();
    let launch = |program: &str, args: &[&str], version: String| Launch {
        program: program.to_owned(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        cwd: dir.to_path_buf(),
        version,
    };
    match name {
        "nginx" => {
            need(Path::new("/usr/sbin/nginx"))?;
            let version = first_line(&output("/usr/sbin/nginx", &["-v"])?);
            let idents = [
                "session-valid",
                "user-id",
                "user-anonymous",
                "user-verified",
                "user-can-reauthenticate",
                "user-roles",
                "session-amr",
                "session-authenticated-at",
            ];
            let steer = [
                "x-original-url",
                "x-rewrite-url",
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
                "x-forwarded-prefix",
                "x-forwarded-path",
                "x-forwarded-uri",
            ];
            let mut echo = String::from("path=$uri\\nmethod=$request_method\\nhost=$host\\nrid=$http_x_diff_id\\n");
            for i in idents {
                echo.push_str(&format!("id.x-authgear-{i}=$http_x_authgear_{}\\n", i.replace('-', "_")));
            }
            for s in steer {
                echo.push_str(&format!("steer.{s}=$http_{}\\n", s.replace('-', "_")));
            }
            let conf = render(&read_src("nginx.conf")?, &[("DIR", d.clone()), ("PORT", p.clone()), ("BACK", free_port().to_string()), ("ECHO", echo)]);
            write(&dir.join("nginx.conf"), &conf)?;
            mkdirs(dir, &["nginx-body"])?;
            Ok(launch("/usr/sbin/nginx", &["-p", &d, "-c", &format!("{d}/nginx.conf")], version))
        }
        "apache" => {
            need(Path::new("/usr/sbin/apache2"))?;
            need(Path::new("/usr/lib/apache2/modules/libphp8.2.so"))?;
            let version = format!("{} + mod_php {}", first_line(&output("/usr/sbin/apache2", &["-v"])?), php_version()?);
            let front = read_src("front.php")?;
            write(&dir.join("apache-app/index.php"), &front)?;
            write(&dir.join("apache-admin/index.php"), &front)?;
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let user = if root { "User nobody\nGroup nogroup".to_owned() } else { String::new() };
            let conf = render(&read_src("apache.conf")?, &[("DIR", d.clone()), ("PORT", p.clone()), ("USER_LINE", user)]);
            write(&dir.join("apache.conf"), &conf)?;
            open_up(dir)?;
            Ok(launch("/usr/sbin/apache2", &["-f", &format!("{d}/apache.conf"), "-DFOREGROUND"], version))
        }
        "php" => {
            let version = format!("PHP built-in server {}", php_version()?);
            write(&dir.join("php/front.php"), &read_src("front.php")?)?;
            let mut l = launch("php", &["-S", &format!("127.0.0.1:{p}"), "-t", &format!("{d}/php"), &format!("{d}/php/front.php")], version);
            l.env = vec![("AGW_SERVER", "php".into()), ("PHP_CLI_SERVER_WORKERS", "4".into())];
            Ok(l)
        }
        "express" => {
            let modules = pre.join("node/node_modules");
            need(&modules.join("express"))?;
            need(&modules.join("method-override"))?;
            let pkg = |m: &str| -> Result<String, NotRunning> {
                let text = std::fs::read_to_string(modules.join(m).join("package.json")).map_err(|e| NotRunning::Missing(format!("{m}: {e}")))?;
                let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| NotRunning::Missing(format!("{m}: {e}")))?;
                Ok(v["version"].as_str().unwrap_or("?").to_owned())
            };
            let version = format!("express {} + method-override {} on Node.js {}", pkg("express")?, pkg("method-override")?, output("node", &["--version"])?);
            let app = dir.join("express.js");
            write(&app, &read_src("express.js")?)?;
            Ok(launch("node", &[&app.display().to_string(), &p, &modules.display().to_string()], version))
        }
        "werkzeug" | "hypercorn" => {
            let python = pre.join("venv/bin/python");
            need(&python)?;
            let py = python.display().to_string();
            let script = format!("import importlib.metadata as m; print(m.version('{name}'))");
            let version = format!("{name} {} on {}", output(&py, &["-c", &script])?, output(&py, &["--version"])?);
            if name == "werkzeug" {
                write(&dir.join("werkzeug_app.py"), &read_src("werkzeug_app.py")?)?;
                Ok(launch(&py, &[&format!("{d}/werkzeug_app.py"), &p], version))
            } else {
                write(&dir.join("hypercorn_app.py"), &read_src("hypercorn_app.py")?)?;
                let bind = format!("127.0.0.1:{p}");
                Ok(launch(&py, &["-m", "hypercorn", "--bind", &bind, "--workers", "1", "hypercorn_app:app"], version))
            }
        }
        "tomcat" => prepare_tomcat(dir, &p),
        other => Err(NotRunning::Broken(format!("no such server {other}"))),
    }
}

fn php_version() -> Result<String, NotRunning> {
    let v = output("php", &["-r", "echo PHP_VERSION;"])?;
    Ok(v)
}

/// Apache's children run as nobody: everything they read must be readable.
fn open_up(dir: &Path) -> Result<(), NotRunning> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
        let entries = std::fs::read_dir(&d).map_err(|e| NotRunning::Broken(format!("{}: {e}", d.display())))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
            }
        }
    }
    Ok(())
}

const TOMCAT_HOME: &str = "/usr/share/tomcat10";

fn prepare_tomcat(dir: &Path, port: &str) -> Result<Launch, NotRunning> {
    let home = Path::new(TOMCAT_HOME);
    need(&home.join("bin/bootstrap.jar"))?;
    let servlet_api = home.join("lib/servlet-api.jar");
    need(&servlet_api)?;
    let catalina = home.join("lib/catalina.jar").display().to_string();
    let version = format!(
        "{} on Java {}",
        output("java", &["-cp", &catalina, "org.apache.catalina.util.ServerInfo"])?
            .lines()
            .find_map(|l| l.strip_prefix("Server version:"))
            .unwrap_or("Tomcat ?")
            .trim(),
        output("java", &["-XshowSettings:properties", "-version"])?.lines().find_map(|l| l.trim().strip_prefix("java.version = ")).unwrap_or("?")
    );
    let d = dir.display().to_string();
    let classes = dir.join("tomcat-app/WEB-INF/classes");
    mkdirs(dir, &["tomcat/conf", "tomcat/logs", "tomcat/temp", "tomcat/work", "tomcat-hosts/app", "tomcat-hosts/admin", "tomcat-app/WEB-INF/classes"])?;
    let sources = ["Echo.java", "HiddenMethodFilter.java"].map(|f| src_dir().join("tomcat/agwdiff").join(f).display().to_string());
    let cp = servlet_api.display().to_string();
    let classes_s = classes.display().to_string();
    let mut args = vec!["-nowarn", "-cp", &cp, "-d", &classes_s];
    args.extend(sources.iter().map(String::as_str));
    output("javac", &args).map_err(|e| match e {
        NotRunning::Missing(m) => NotRunning::Broken(format!("compiling the servlet: {m}")),
        b => b,
    })?;
    copy_tree(&classes, &dir.join("tomcat-admin/WEB-INF/classes"))?;
    let web = read_src("tomcat/web.xml")?;
    write(&dir.join("tomcat-app/WEB-INF/web.xml"), &render(&web, &[("AREA", String::new())]))?;
    write(&dir.join("tomcat-admin/WEB-INF/web.xml"), &render(&web, &[("AREA", "admin".into())]))?;
    write(&dir.join("tomcat/conf/server.xml"), &render(&read_src("tomcat/server.xml")?, &[("DIR", d.clone()), ("PORT", port.to_owned())]))?;
    let cp = format!("{TOMCAT_HOME}/bin/bootstrap.jar:{TOMCAT_HOME}/bin/tomcat-juli.jar");
    let args: Vec<String> = [
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-cp",
        &cp,
        &format!("-Dcatalina.home={TOMCAT_HOME}"),
        &format!("-Dcatalina.base={d}/tomcat"),
        &format!("-Djava.io.tmpdir={d}/tomcat/temp"),
        "org.apache.catalina.startup.Bootstrap",
        "start",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Ok(Launch { program: "java".into(), args, env: Vec::new(), cwd: dir.to_path_buf(), version })
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), NotRunning> {
    std::fs::create_dir_all(to).map_err(|e| NotRunning::Broken(format!("{}: {e}", to.display())))?;
    let entries = std::fs::read_dir(from).map_err(|e| NotRunning::Broken(format!("{}: {e}", from.display())))?;
    for e in entries.flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target).map_err(|err| NotRunning::Broken(format!("{}: {err}", target.display())))?;
        }
    }
    Ok(())
}

/// Prepares and starts `name` under `dir`, then polls it until it answers
/// as the app (a bounded wait: Tomcat takes seconds on a busy machine).
pub async fn start(name: &'static str, dir: PathBuf) -> Result<Running, NotRunning> {
    let port = free_port();
    let d = dir.clone();
    let launch = tokio::task::spawn_blocking(move || prepare(name, &d, port)).await.map_err(|e| NotRunning::Broken(e.to_string()))??;
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).map_err(|e| NotRunning::Broken(format!("{}: {e}", log.display())))?;
    let err = file.try_clone().map_err(|e| NotRunning::Broken(e.to_string()))?;
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args).current_dir(&launch.cwd).stdin(Stdio::null()).stdout(file).stderr(err).process_group(0);
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    // SAFETY: prctl is async-signal-safe and touches only the new process:
    // if the test process dies without unwinding (killed by a timeout),
    // the server dies with it instead of outliving the run.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| NotRunning::Missing(format!("{}: {e}", launch.program)))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut running = Running { name, addr, version: launch.version, log, child };
    let started = Instant::now();
    let probe = "GET /public/ready HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n";
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(NotRunning::Broken(format!("{name} exited ({status}) before answering:\n{}", running.log_tail())));
        }
        let out = super::wire::h1_exchange(addr, probe.as_bytes(), false, false, Duration::from_secs(2)).await;
        if out.responses.first().is_some_and(|r| r.body.starts_with(b"agw-diff\n")) {
            return Ok(running);
        }
        if started.elapsed() > Duration::from_secs(90) {
            return Err(NotRunning::Broken(format!("{name} did not answer within 90 s:\n{}", running.log_tail())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
