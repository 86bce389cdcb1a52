//! Command-line tools over the management HTTP API: `warren ctl ...`, and the same binary called as
//! `rabbitmqctl`, `rabbitmq-diagnostics`, `rabbitmq-plugins` or `rabbitmqadmin` (the container
//! links those names to it), for the everyday commands health checks, Testcontainers and scripts
//! run.
//!
//! Runs in: its own short-lived process (blocking HTTP with ureq; no broker state).
//!
//! # Invariants
//! - `ping`, `check_running` and `await_startup` need no credentials (any HTTP answer from the
//!   management port means the node runs), as RabbitMQ's need none.
//! - Exit codes follow rabbitmqctl's: 0 success, 64 usage error, 65 data error (e.g. a failed
//!   check), 69 node unavailable (nothing answers on the management port), 70 for the commands
//!   RabbitMQ ends with `exit_software` when the broker refuses them (add / delete super stream).
//! - `add_super_stream` leaves nothing behind when it fails part way: what it created (exchange,
//!   partition streams) is deleted again, as RabbitMQ's stream manager does.
//! - Credentials: `--username` / `--password`, else `WARREN_CTL_USER` / `WARREN_CTL_PASSWORD`, else
//!   `RABBITMQ_DEFAULT_USER` / `RABBITMQ_DEFAULT_PASS` (what a container was started with), else
//!   the configuration file's `default_user` / `default_pass`, else guest / guest. The API
//!   address: `--host` / `--port`, else `WARREN_MANAGEMENT_PORT`, else `management.tcp.port` of
//!   the configuration files, else
//!   127.0.0.1:15672.
use serde_json::{json, Value};
use std::io::Write;

/// Usage error.
const EX_USAGE: i32 = 64;
/// A check failed or the broker refused the request.
const EX_DATAERR: i32 = 65;
/// The broker could not be reached.
const EX_UNAVAILABLE: i32 = 69;
/// The broker refused a super stream command (RabbitMQ's `exit_software` for them).
const EX_SOFTWARE: i32 = 70;

/// Which tool the binary runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `warren ctl` and `rabbitmqctl`.
    Ctl,
    /// `rabbitmq-diagnostics`.
    Diagnostics,
    /// `rabbitmq-plugins`.
    Plugins,
    /// `rabbitmqadmin`.
    Admin,
    /// `rabbitmq-streams`: super streams, the stream protocol's connections, publishers and
    /// consumers, a stream's status.
    Streams,
    /// `sh -c "..."`: health checks written as shell commands (Docker's `CMD-SHELL`, GitHub
    /// Actions' `--health-cmd`) in an image that has no shell.
    Shell,
}

impl Tool {
    /// The tool a program name stands for, if it is one of RabbitMQ's.
    pub fn from_program(name: &str) -> Option<Tool> {
        let base = std::path::Path::new(name).file_name()?.to_str()?;
        match base {
            "rabbitmqctl" => Some(Tool::Ctl),
            "rabbitmq-diagnostics" => Some(Tool::Diagnostics),
            "rabbitmq-plugins" => Some(Tool::Plugins),
            "rabbitmqadmin" => Some(Tool::Admin),
            "rabbitmq-streams" => Some(Tool::Streams),
            "sh" => Some(Tool::Shell),
            _ => None,
        }
    }
}

/// Options common to every tool.
struct Opts {
    host: String,
    port: u16,
    user: String,
    pass: String,
    vhost: Option<String>,
    json: bool,
    quiet: bool,
    silent: bool,
    timeout_secs: u64,
    /// Positional arguments, command first.
    args: Vec<String>,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn parse(tool: Tool, argv: Vec<String>) -> Result<Opts, String> {
    // The broker's configuration files may have moved the management port or set the default
    // user: use them where the environment says nothing.
    let files = crate::conffile::locate(
        env("RABBITMQ_CONFIG_FILE").map(Into::into),
        env("RABBITMQ_CONFIG_FILES").map(Into::into),
    );
    let entries = crate::conffile::read(&files).unwrap_or_default();
    let file = |k: &str| crate::conffile::last(&entries, k).map(|e| e.value.clone());
    let mut o = Opts {
        // An address, not a name: a static binary in a `scratch` image has no resolver to ask.
        host: "127.0.0.1".into(),
        port: env("WARREN_MANAGEMENT_PORT")
            .or_else(|| file("management.tcp.port"))
            .and_then(|p| p.parse().ok())
            .unwrap_or(crate::config::DEFAULT_MANAGEMENT_PORT),
        user: env("WARREN_CTL_USER")
            .or_else(|| env("RABBITMQ_DEFAULT_USER"))
            .or_else(|| file("default_user"))
            .unwrap_or_else(|| "guest".into()),
        pass: env("WARREN_CTL_PASSWORD")
            .or_else(|| env("RABBITMQ_DEFAULT_PASS"))
            .or_else(|| file("default_pass"))
            .unwrap_or_else(|| "guest".into()),
        vhost: None,
        json: false,
        quiet: false,
        silent: false,
        timeout_secs: 300,
        args: Vec::new(),
    };
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("option {name} needs a value"));
        // rabbitmqadmin's short options differ from rabbitmqctl's: -p is its password.
        match (tool, a.as_str()) {
            (_, "--host") | (Tool::Admin, "-H") => o.host = val(&a)?,
            (_, "--port") | (Tool::Admin, "-P") => o.port = val(&a)?.parse().map_err(|_| "invalid port".to_string())?,
            (_, "--username") | (_, "-u") => o.user = val(&a)?,
            (_, "--password") | (Tool::Admin, "-p") => o.pass = val(&a)?,
            (Tool::Admin, "-V") | (Tool::Admin, "--vhost") => o.vhost = Some(val(&a)?),
            (_, "-p") | (_, "--vhost") => o.vhost = Some(val(&a)?),
            (_, "--formatter") | (Tool::Admin, "-f") | (Tool::Admin, "--format") => {
                let f = val(&a)?;
                o.json = f.contains("json");
            }
            (_, "-q") | (_, "--quiet") => o.quiet = true,
            (_, "-s") | (_, "--silent") => {
                o.quiet = true;
                o.silent = true;
            }
            (_, "-t") | (_, "--timeout") => {
                o.timeout_secs = val(&a)?.parse().map_err(|_| "invalid timeout".to_string())?
            }
            // Node names and Erlang options mean nothing here.
            (_, "-n") | (_, "--node") | (_, "--longnames") | (_, "--erlang-cookie") => {
                if a != "--longnames" {
                    let _ = val(&a)?;
                }
            }
            (_, "--offline") | (_, "--online") | (_, "--no-table-headers") => {
                if a == "--no-table-headers" {
                    o.silent = true;
                }
            }
            _ => {
                if let Some(f) = a.strip_prefix("--formatter=") {
                    o.json = f.contains("json");
                } else if let Some(v) = a.strip_prefix("--vhost=") {
                    o.vhost = Some(v.into());
                } else {
                    o.args.push(a);
                }
            }
        }
    }
    Ok(o)
}

/// Failure of one command: exit code and message.
struct Fail(i32, String);

type R<T> = Result<T, Fail>;

struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

fn pct(s: &str) -> String {
    crate::mgmt::views::percent_encode(s)
}

impl Api {
    fn new(o: &Opts) -> Api {
        use base64::Engine;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(o.timeout_secs.clamp(1, 60))))
            .build()
            .into();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", o.user, o.pass));
        Api { agent, base: format!("http://{}:{}/api", o.host, o.port), auth: format!("Basic {auth}") }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> R<Value> {
        let url = format!("{}{}", self.base, path);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &self.auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("Authorization", &self.auth).call(),
            ("PUT", b) => {
                self.agent.put(&url).header("Authorization", &self.auth).send_json(b.cloned().unwrap_or(json!({})))
            }
            (_, b) => {
                self.agent.post(&url).header("Authorization", &self.auth).send_json(b.cloned().unwrap_or(json!({})))
            }
        };
        let mut resp = r.map_err(|e| {
            Fail(EX_UNAVAILABLE, format!("Error: unable to reach Warren's management API at {}: {e}", self.base))
        })?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            let reason = v.get("reason").and_then(|r| r.as_str()).map(str::to_string).unwrap_or_else(|| v.to_string());
            return Err(Fail(EX_DATAERR, format!("Error: {reason} (HTTP {status})")));
        }
        Ok(v)
    }
    fn get(&self, path: &str) -> R<Value> {
        self.call("GET", path, None)
    }
    /// The node answers (any HTTP status, even 401): like RabbitMQ's `ping`, this needs no
    /// credentials, so a health check works whoever the users are.
    fn reachable(&self) -> R<()> {
        match self.call("GET", "/overview", None) {
            Ok(_) => Ok(()),
            Err(Fail(EX_DATAERR, _)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Run a tool; returns the process exit code.
pub fn run(tool: Tool, argv: Vec<String>) -> i32 {
    if tool == Tool::Shell {
        return shell(argv);
    }
    let o = match parse(tool, argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            return EX_USAGE;
        }
    };
    let api = Api::new(&o);
    let r = match tool {
        Tool::Ctl | Tool::Diagnostics => ctl(&o, &api),
        Tool::Plugins => plugins(&o),
        Tool::Admin => admin(&o, &api),
        Tool::Streams => streams(&o, &api),
        Tool::Shell => return shell(o.args),
    };
    match r {
        Ok(()) => 0,
        Err(Fail(code, msg)) => {
            eprintln!("{msg}");
            code
        }
    }
}

fn usage<T>(msg: &str) -> R<T> {
    Err(Fail(EX_USAGE, format!("Error: {msg}")))
}

fn vhost_of(o: &Opts) -> String {
    o.vhost.clone().unwrap_or_else(|| "/".into())
}

/// A field of an API object by rabbitmqctl's column name.
fn column(kind: &str, item: &Value, col: &str) -> Value {
    let key = match (kind, col) {
        ("bindings", "source_name") => "source",
        ("bindings", "destination_name") => "destination",
        ("bindings", "destination_kind") => "destination_type",
        ("bindings", "source_kind") => return json!("exchange"),
        ("consumers", "queue_name") => return item["queue"]["name"].clone(),
        ("consumers", "channel_pid") => return item["channel_details"]["name"].clone(),
        ("users", "user") => "name",
        // rabbitmq-streams' info keys over /api/stream's fields.
        ("stream_connections", "conn_name") => "name",
        ("stream_connections", "connection_state") => "state",
        ("stream_connections", "heartbeat") => "timeout",
        ("stream_consumers" | "stream_publishers", "connection_pid") => {
            return item["connection_details"]["name"].clone()
        }
        ("stream_consumers" | "stream_publishers", "node") => return item["connection_details"]["node"].clone(),
        ("stream_consumers" | "stream_publishers", "stream") => return item["queue"]["name"].clone(),
        ("stream_consumers", "messages_consumed") => "consumed",
        ("stream_consumers", "activity_status") => return activity_status(item),
        ("stream_publishers", "messages_published") => "published",
        ("stream_publishers", "messages_confirmed") => "confirmed",
        ("stream_publishers", "messages_errored") => "errored",
        (_, c) => c,
    };
    item.get(key).cloned().unwrap_or(Value::Null)
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        // rabbitmqctl prints lists of names as `[a, b]`.
        Value::Array(a) if a.iter().all(|x| x.is_string()) => {
            format!("[{}]", a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
        }
        Value::Null => String::new(),
        Value::Object(m) if m.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

/// Print rows as rabbitmqctl does (tab-separated with a header), or as a JSON array.
fn print_rows(o: &Opts, kind: &str, info: &str, items: &[Value], cols: &[String]) {
    let mut out = std::io::stdout().lock();
    if o.json {
        let rows: Vec<Value> = items
            .iter()
            .map(|i| Value::Object(cols.iter().map(|c| (c.clone(), column(kind, i, c))).collect()))
            .collect();
        let _ = writeln!(out, "{}", Value::Array(rows));
        return;
    }
    if !o.quiet {
        let _ = writeln!(out, "{info}");
    }
    if !o.silent {
        let _ = writeln!(out, "{}", cols.join("\t"));
    }
    for i in items {
        let row: Vec<String> = cols.iter().map(|c| cell(&column(kind, i, c))).collect();
        let _ = writeln!(out, "{}", row.join("\t"));
    }
}

fn list(o: &Opts, api: &Api, kind: &str, defaults: &[&str], scoped: bool) -> R<()> {
    let cols: Vec<String> =
        if o.args.len() > 1 { o.args[1..].to_vec() } else { defaults.iter().map(|s| s.to_string()).collect() };
    let v = vhost_of(o);
    let (path, info) = match kind {
        "users" => ("/users".to_string(), "Listing users ...".to_string()),
        "vhosts" => ("/vhosts".to_string(), "Listing vhosts ...".to_string()),
        "permissions" => {
            (format!("/vhosts/{}/permissions", pct(&v)), format!("Listing permissions for vhost \"{v}\" ..."))
        }
        "connections" => ("/connections".to_string(), "Listing connections ...".to_string()),
        "channels" => ("/channels".to_string(), "Listing channels ...".to_string()),
        k if scoped => (format!("/{k}/{}", pct(&v)), format!("Listing {k} for vhost {v} ...")),
        k => (format!("/{k}"), format!("Listing {k} ...")),
    };
    let items = api.get(&path)?;
    let items = items.as_array().cloned().unwrap_or_default();
    print_rows(o, kind, &info, &items, &cols);
    Ok(())
}

/// The columns asked for after the first `from` arguments, else the defaults.
fn cols_or(o: &Opts, from: usize, defaults: &[&str]) -> Vec<String> {
    if o.args.len() > from {
        o.args[from..].to_vec()
    } else {
        defaults.iter().map(|s| s.to_string()).collect()
    }
}

/// A clear command's result: clearing what is not set is not an error (as rabbitmqctl).
fn clear_ok(r: R<Value>) -> R<()> {
    match r {
        Err(Fail(_, msg)) if msg.ends_with("(HTTP 404)") => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

fn arg(o: &Opts, i: usize, what: &str) -> R<String> {
    o.args.get(i).cloned().map_or_else(|| usage(&format!("missing {what}")), Ok)
}

fn say(o: &Opts, s: &str) {
    if !o.quiet {
        println!("{s}");
    }
}

fn ctl(o: &Opts, api: &Api) -> R<()> {
    let Some(cmd) = o.args.first().map(String::as_str) else {
        return usage("no command given; try `warren ctl help`");
    };
    let v = vhost_of(o);
    match cmd {
        "help" | "--help" | "-h" => {
            println!("{}", HELP);
            Ok(())
        }
        "version" => {
            let ov = api.get("/overview")?;
            println!("{}", ov["rabbitmq_version"].as_str().unwrap_or(""));
            Ok(())
        }
        _ => {
            let groups =
                [listing, users_and_permissions, policies, queues_and_definitions, health_checks, stream_commands];
            for handles in groups {
                if handles(o, api, cmd, &v)? {
                    return Ok(());
                }
            }
            usage(&format!("command '{cmd}' is not supported by Warren; try `warren ctl help`"))
        }
    }
}

/// `warren ctl` / rabbitmqctl commands: `list_*`: listings of queues, exchanges, bindings, connections, channels, consumers, users, vhosts, permissions, enabled plugins. `Ok(false)` when `cmd` is not one of them.
fn listing(o: &Opts, api: &Api, cmd: &str, v: &str) -> R<bool> {
    match cmd {
        "list_queues" => list(o, api, "queues", &["name", "messages"], true),
        "list_exchanges" => list(o, api, "exchanges", &["name", "type"], true),
        "list_bindings" => list(
            o,
            api,
            "bindings",
            &["source_name", "source_kind", "destination_name", "destination_kind", "routing_key", "arguments"],
            true,
        ),
        "list_connections" => list(o, api, "connections", &["user", "peer_host", "peer_port", "state"], false),
        "list_channels" => {
            list(o, api, "channels", &["name", "user", "consumer_count", "messages_unacknowledged"], false)
        }
        "list_consumers" => list(
            o,
            api,
            "consumers",
            &["queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active", "arguments"],
            true,
        ),
        "list_users" => list(o, api, "users", &["user", "tags"], false),
        "list_vhosts" => list(o, api, "vhosts", &["name"], false),
        "list_permissions" => list(o, api, "permissions", &["user", "configure", "write", "read"], false),
        "list_user_permissions" => {
            let u = arg(o, 1, "user name")?;
            let items = api.get(&format!("/users/{}/permissions", pct(&u)))?;
            let cols: Vec<String> = ["vhost", "configure", "write", "read"].iter().map(|s| s.to_string()).collect();
            print_rows(
                o,
                "permissions",
                &format!("Listing permissions for user \"{u}\" ..."),
                items.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &cols,
            );
            Ok(())
        }
        "list_topic_permissions" => {
            let items = api.get(&format!("/vhosts/{}/topic-permissions", pct(v)))?;
            print_rows(
                o,
                "topic_permissions",
                &format!("Listing topic permissions for vhost \"{v}\" ..."),
                items.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &cols_or(o, 1, &["user", "exchange", "write", "read"]),
            );
            Ok(())
        }
        "list_user_topic_permissions" => {
            let u = arg(o, 1, "user name")?;
            let items = api.get(&format!("/users/{}/topic-permissions", pct(&u)))?;
            print_rows(
                o,
                "topic_permissions",
                &format!("Listing topic permissions for user \"{u}\" ..."),
                items.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &cols_or(o, 2, &["vhost", "exchange", "write", "read"]),
            );
            Ok(())
        }
        "list_enabled_plugins" => {
            for p in crate::plugins::BUILT_IN {
                println!("{p}");
            }
            Ok(())
        }
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// `warren ctl` / rabbitmqctl commands: Users, vhosts, permissions and topic permissions. `Ok(false)` when `cmd` is not one of them.
fn users_and_permissions(o: &Opts, api: &Api, cmd: &str, v: &str) -> R<bool> {
    match cmd {
        "add_user" => {
            let (u, p) = (arg(o, 1, "user name")?, arg(o, 2, "password")?);
            if api.get(&format!("/users/{}", pct(&u))).is_ok() {
                return Err(Fail(EX_DATAERR, format!("Error: user '{u}' already exists")));
            }
            api.call("PUT", &format!("/users/{}", pct(&u)), Some(&json!({"password": p, "tags": ""})))?;
            say(o, &format!("Adding user \"{u}\" ..."));
            Ok(())
        }
        "change_password" => {
            let (u, p) = (arg(o, 1, "user name")?, arg(o, 2, "password")?);
            let cur = api.get(&format!("/users/{}", pct(&u)))?;
            api.call("PUT", &format!("/users/{}", pct(&u)), Some(&json!({"password": p, "tags": cur["tags"]})))?;
            say(o, &format!("Changing password for user \"{u}\" ..."));
            Ok(())
        }
        "delete_user" => {
            let u = arg(o, 1, "user name")?;
            api.call("DELETE", &format!("/users/{}", pct(&u)), None)?;
            say(o, &format!("Deleting user \"{u}\" ..."));
            Ok(())
        }
        "set_user_tags" => {
            let u = arg(o, 1, "user name")?;
            let tags: Vec<String> = o.args[2..].to_vec();
            let mut cur = api.get(&format!("/users/{}", pct(&u)))?;
            cur["tags"] = json!(tags);
            if let Value::Object(m) = &mut cur {
                m.remove("limits");
            }
            api.call("PUT", &format!("/users/{}", pct(&u)), Some(&cur))?;
            say(o, &format!("Setting tags for user \"{u}\" to [{}] ...", tags.join(", ")));
            Ok(())
        }
        "add_vhost" => {
            let name = arg(o, 1, "vhost name")?;
            api.call("PUT", &format!("/vhosts/{}", pct(&name)), None)?;
            say(o, &format!("Adding vhost \"{name}\" ..."));
            Ok(())
        }
        "trace_on" | "trace_off" => {
            // The firehose switch of one vhost (`-p`, default `/`): the `tracing` flag of its
            // `PUT /api/vhosts/{vhost}`; the vhost must exist (a PUT would create it).
            let on = cmd == "trace_on";
            say(o, &format!("{} tracing for vhost \"{v}\" ...", if on { "Starting" } else { "Stopping" }));
            api.get(&format!("/vhosts/{}", pct(v)))?;
            api.call("PUT", &format!("/vhosts/{}", pct(v)), Some(&json!({ "tracing": on })))?;
            say(o, &format!("Trace {} for vhost {v}", if on { "enabled" } else { "disabled" }));
            Ok(())
        }
        "reset_vhost" => {
            // Warren's test control: the vhost back to its state after creation.
            say(o, &format!("Resetting vhost \"{v}\" ..."));
            api.call("POST", &format!("/warren/vhosts/{}/reset", pct(v)), None)?;
            Ok(())
        }
        "reset_all" => {
            // Warren's test control: every vhost reset, the boot definitions imported again.
            let keep = !o.args.iter().any(|a| a == "--no-definitions");
            say(o, "Resetting every vhost ...");
            let r = api.call("POST", &format!("/warren/reset?keep_definitions={keep}"), None)?;
            for p in r["problems"].as_array().into_iter().flatten() {
                eprintln!("{}", p.as_str().unwrap_or_default());
            }
            Ok(())
        }
        "wait_idle" => {
            // Warren's test control: wait until the vhost has nothing ready, unacked or delayed.
            let opt = |k: &str| o.args.iter().position(|a| a == k).and_then(|i| o.args.get(i + 1)).cloned();
            let quiet = opt("--quiet-ms").unwrap_or_else(|| "100".into());
            let timeout = opt("--timeout-ms").unwrap_or_else(|| "5000".into());
            let path =
                format!("/warren/vhosts/{}/wait-idle?quiet_ms={}&timeout_ms={}", pct(v), pct(&quiet), pct(&timeout));
            let r = api.get(&path)?;
            println!("{r}");
            Ok(())
        }
        "delete_vhost" => {
            let name = arg(o, 1, "vhost name")?;
            api.call("DELETE", &format!("/vhosts/{}", pct(&name)), None)?;
            say(o, &format!("Deleting vhost \"{name}\" ..."));
            Ok(())
        }
        "set_vhost_limits" => {
            // As RabbitMQ: the definition replaces every limit of the vhost.
            let def = arg(o, 1, "limits definition")?;
            let limits: serde_json::Map<String, Value> =
                serde_json::from_str(&def).map_err(|e| Fail(EX_DATAERR, format!("Error: invalid JSON: {e}")))?;
            for name in ["max-connections", "max-queues"] {
                api.call("DELETE", &format!("/vhost-limits/{}/{}", pct(v), name), None)?;
            }
            for (name, value) in &limits {
                let path = format!("/vhost-limits/{}/{}", pct(v), pct(name));
                api.call("PUT", &path, Some(&json!({ "value": value })))?;
            }
            say(o, &format!("Applying limits \"{def}\" to vhost \"{v}\" ..."));
            Ok(())
        }
        "clear_vhost_limits" => {
            for name in ["max-connections", "max-queues"] {
                api.call("DELETE", &format!("/vhost-limits/{}/{}", pct(v), name), None)?;
            }
            say(o, &format!("Clearing vhost \"{v}\" limits ..."));
            Ok(())
        }
        "list_vhost_limits" => {
            let rows = api.get(&format!("/vhost-limits/{}", pct(v)))?;
            let value = rows.get(0).map(|r| r["value"].clone()).unwrap_or_else(|| json!({}));
            println!("{value}");
            Ok(())
        }
        "set_user_limits" => {
            // As RabbitMQ: the definition is merged into the user's limits.
            let u = arg(o, 1, "user name")?;
            let def = arg(o, 2, "limits definition")?;
            let limits: serde_json::Map<String, Value> =
                serde_json::from_str(&def).map_err(|e| Fail(EX_DATAERR, format!("Error: invalid JSON: {e}")))?;
            say(o, &format!("Setting user limits to \"{def}\" for user \"{u}\" ..."));
            for (name, value) in &limits {
                let path = format!("/user-limits/{}/{}", pct(&u), pct(name));
                api.call("PUT", &path, Some(&json!({ "value": value })))?;
            }
            Ok(())
        }
        "clear_user_limits" => {
            let u = arg(o, 1, "user name")?;
            let name = arg(o, 2, "limit name or 'all'")?;
            let names: Vec<&str> = if name == "all" { crate::user_limits::NAMES.to_vec() } else { vec![name.as_str()] };
            if name == "all" {
                say(o, &format!("Clearing all limits for user \"{u}\" ..."));
            } else {
                say(o, &format!("Clearing \"{name}\" limit for user \"{u}\" ..."));
            }
            for n in names {
                api.call("DELETE", &format!("/user-limits/{}/{}", pct(&u), pct(n)), None)?;
            }
            Ok(())
        }
        "list_user_limits" => {
            let u = match o.args.iter().position(|a| a == "--user") {
                Some(i) => o.args.get(i + 1).cloned().ok_or_else(|| Fail(EX_USAGE, "--user needs a name".into()))?,
                None => "guest".to_string(),
            };
            say(o, &format!("Listing limits for user \"{u}\" ..."));
            let rows = api.get(&format!("/user-limits/{}", pct(&u)))?;
            let value = rows.get(0).map(|r| r["value"].clone()).unwrap_or_else(|| json!({}));
            println!("{value}");
            Ok(())
        }
        "set_permissions" => {
            let u = arg(o, 1, "user name")?;
            let (c, w, r) = (arg(o, 2, "configure pattern")?, arg(o, 3, "write pattern")?, arg(o, 4, "read pattern")?);
            let body = json!({"configure": c, "write": w, "read": r});
            api.call("PUT", &format!("/permissions/{}/{}", pct(v), pct(&u)), Some(&body))?;
            say(o, &format!("Setting permissions for user \"{u}\" in vhost \"{v}\" ..."));
            Ok(())
        }
        "clear_permissions" => {
            let u = arg(o, 1, "user name")?;
            api.call("DELETE", &format!("/permissions/{}/{}", pct(v), pct(&u)), None)?;
            say(o, &format!("Clearing permissions for user \"{u}\" in vhost \"{v}\" ..."));
            Ok(())
        }
        "set_topic_permissions" => {
            let (u, x) = (arg(o, 1, "user name")?, arg(o, 2, "exchange")?);
            let (w, r) = (arg(o, 3, "write pattern")?, arg(o, 4, "read pattern")?);
            let body = json!({"exchange": x, "write": w, "read": r});
            api.call("PUT", &format!("/topic-permissions/{}/{}", pct(v), pct(&u)), Some(&body))?;
            say(o, &format!("Setting topic permissions on \"{x}\" for user \"{u}\" in vhost \"{v}\" ..."));
            Ok(())
        }
        "clear_topic_permissions" => {
            let u = arg(o, 1, "user name")?;
            let path = format!("/topic-permissions/{}/{}", pct(v), pct(&u));
            match o.args.get(2) {
                Some(x) => {
                    say(o, &format!("Clearing topic permissions on \"{x}\" for user \"{u}\" in vhost \"{v}\" ..."));
                    clear_ok(api.call("DELETE", &format!("{path}?exchange={}", pct(x)), None))
                }
                None => {
                    say(o, &format!("Clearing topic permissions for user \"{u}\" in vhost \"{v}\" ..."));
                    clear_ok(api.call("DELETE", &path, None))
                }
            }
        }
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// `warren ctl` / rabbitmqctl commands: Policies: set, clear, list. `Ok(false)` when `cmd` is not one of them.
fn policies(o: &Opts, api: &Api, cmd: &str, v: &str) -> R<bool> {
    match cmd {
        "set_parameter" => {
            let (component, name, value) = (arg(o, 1, "component")?, arg(o, 2, "name")?, arg(o, 3, "value")?);
            say(o, &format!("Setting runtime parameter \"{name}\" for component \"{component}\" to \"{value}\" in vhost \"{v}\" ..."));
            let value: Value =
                serde_json::from_str(&value).map_err(|e| Fail(EX_USAGE, format!("Error: value: {e}")))?;
            let path = format!("/parameters/{}/{}/{}", pct(&component), pct(v), pct(&name));
            api.call("PUT", &path, Some(&json!({"value": value})))?;
            Ok(())
        }
        "clear_parameter" => {
            let (component, name) = (arg(o, 1, "component")?, arg(o, 2, "name")?);
            say(
                o,
                &format!("Clearing runtime parameter \"{name}\" for component \"{component}\" on vhost \"{v}\" ..."),
            );
            let path = format!("/parameters/{}/{}/{}", pct(&component), pct(v), pct(&name));
            match api.call("DELETE", &path, None) {
                Err(Fail(_, m)) if m.ends_with("(HTTP 404)") => {
                    Err(Fail(EX_DATAERR, "Error:\nParameter does not exist".into()))
                }
                r => r.map(|_| ()),
            }
        }
        "list_parameters" => {
            let items = api.get(&format!("/parameters?vhost={}", pct(v)))?;
            let items: Vec<Value> =
                items.as_array().into_iter().flatten().filter(|p| p["vhost"] == *v).cloned().collect();
            let cols = cols_or(o, 1, &["component", "name", "value"]);
            print_rows(o, "parameters", &format!("Listing runtime parameters for vhost \"{v}\" ..."), &items, &cols);
            Ok(())
        }
        "shovel_status" => {
            let items = api.get("/shovels")?;
            let rows: Vec<Value> = items
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    json!({
                        "name": s["name"], "vhost": s["vhost"], "type": s["type"], "state": s["state"],
                        "source": s["src_uri"], "destination": s["dest_uri"],
                        "source_queue": s["src_queue"], "destination_queue": s["dest_queue"],
                        "source_protocol": s["src_protocol"], "destination_protocol": s["dest_protocol"],
                        "termination_reason": s["reason"], "last_changed": s["timestamp"],
                    })
                })
                .collect();
            let cols =
                cols_or(o, 1, &["name", "vhost", "type", "state", "source", "destination", "termination_reason"]);
            let node = crate::node::name();
            print_rows(o, "shovels", &format!("Shovel status on node {node}"), &rows, &cols);
            Ok(())
        }
        "delete_shovel" | "restart_shovel" => {
            let name = arg(o, 1, "shovel name")?;
            let (line, suffix) = match cmd {
                "delete_shovel" => (format!("Deleting shovel {name} in vhost {v}"), ""),
                _ => (format!("Restarting dynamic Shovel {name} in virtual host {v}"), "/restart"),
            };
            say(o, &line);
            let path = format!("/shovels/vhost/{}/{}{suffix}", pct(v), pct(&name));
            match api.call("DELETE", &path, None) {
                Err(Fail(_, m)) if m.ends_with("(HTTP 404)") => Err(Fail(
                    EX_DATAERR,
                    format!("Error:\nShovel with the given name was not found in virtual host '{v}'"),
                )),
                r => r.map(|_| ()),
            }
        }
        "set_policy" | "set_operator_policy" => {
            // set_policy / set_operator_policy [--priority N] [--apply-to X] NAME PATTERN DEFINITION
            let (mut priority, mut apply_to, mut rest) = (0i64, "all".to_string(), Vec::new());
            let mut it = o.args[1..].iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--priority" => priority = it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                    "--apply-to" => apply_to = it.next().cloned().unwrap_or_default(),
                    _ => rest.push(a.clone()),
                }
            }
            let [name, pattern, definition] = rest.as_slice() else {
                return usage(&format!("{cmd} [-p VHOST] [--priority N] [--apply-to X] NAME PATTERN DEFINITION"));
            };
            let def: Value =
                serde_json::from_str(definition).map_err(|e| Fail(EX_USAGE, format!("Error: definition: {e}")))?;
            let (what, path) = match cmd {
                "set_policy" => ("policy", "policies"),
                _ => ("operator policy override", "operator-policies"),
            };
            // RabbitMQ prints the line first (also when the broker then refuses the definition).
            say(o, &format!("Setting {what} \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \"{priority}\" for vhost \"{v}\" ..."));
            let body = json!({"pattern": pattern, "definition": def, "priority": priority, "apply-to": apply_to});
            api.call("PUT", &format!("/{path}/{}/{}", pct(v), pct(name)), Some(&body))?;
            Ok(())
        }
        "clear_policy" | "clear_operator_policy" => {
            let (what, path) = match cmd {
                "clear_policy" => ("policy", "policies"),
                _ => ("operator policy", "operator-policies"),
            };
            let name = arg(o, 1, &format!("{what} name"))?;
            say(o, &format!("Clearing {what} \"{name}\" on vhost \"{v}\" ..."));
            api.call("DELETE", &format!("/{path}/{}/{}", pct(v), pct(&name)), None)?;
            Ok(())
        }
        "list_policies" | "list_operator_policies" => {
            let (what, path) = match cmd {
                "list_policies" => ("policies", "policies"),
                _ => ("operator policy overrides", "operator-policies"),
            };
            let items = api.get(&format!("/{path}/{}", pct(v)))?;
            let cols: Vec<String> = ["vhost", "name", "pattern", "apply-to", "definition", "priority"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            print_rows(
                o,
                "policies",
                &format!("Listing {what} for vhost \"{v}\" ..."),
                items.as_array().map(Vec::as_slice).unwrap_or(&[]),
                &cols,
            );
            Ok(())
        }
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// `warren ctl` / rabbitmqctl commands: Queues (purge, delete) and definitions (export, import). `Ok(false)` when `cmd` is not one of them.
fn queues_and_definitions(o: &Opts, api: &Api, cmd: &str, v: &str) -> R<bool> {
    match cmd {
        "purge_queue" => {
            let q = arg(o, 1, "queue name")?;
            api.call("DELETE", &format!("/queues/{}/{}/contents", pct(v), pct(&q)), None)?;
            say(o, &format!("Purging queue '{q}' in vhost '{v}' ..."));
            Ok(())
        }
        "delete_queue" => {
            let q = arg(o, 1, "queue name")?;
            let cur = api.get(&format!("/queues/{}/{}", pct(v), pct(&q)))?;
            api.call("DELETE", &format!("/queues/{}/{}", pct(v), pct(&q)), None)?;
            say(o, &format!("Deleting queue '{q}' on vhost '{v}' ..."));
            say(o, &format!("Queue was successfully deleted with {} messages", cur["messages"].as_u64().unwrap_or(0)));
            Ok(())
        }
        "export_definitions" => {
            let path = arg(o, 1, "file path (or - for standard output)")?;
            let d = api.get("/definitions")?;
            let text = serde_json::to_string_pretty(&d).unwrap_or_default();
            if path == "-" {
                println!("{text}");
            } else {
                std::fs::write(&path, text)
                    .map_err(|e| Fail(EX_DATAERR, format!("Error: cannot write {path}: {e}")))?;
                say(o, &format!("Exported definitions for local node to {path}"));
            }
            Ok(())
        }
        "import_definitions" => {
            let path = arg(o, 1, "file path")?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Fail(EX_DATAERR, format!("Error: cannot read {path}: {e}")))?;
            let d: Value = serde_json::from_str(&text).map_err(|e| Fail(EX_DATAERR, format!("Error: {path}: {e}")))?;
            api.call("POST", "/definitions", Some(&d))?;
            say(o, &format!("Importing definitions in JSON from a file at \"{path}\" ..."));
            Ok(())
        }
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// `warren ctl` / rabbitmqctl commands: Health checks and status: ping, await_startup, check_*, status. `Ok(false)` when `cmd` is not one of them.
fn health_checks(o: &Opts, api: &Api, cmd: &str, _vhost: &str) -> R<bool> {
    match cmd {
        "ping" => {
            api.reachable()?;
            say(o, "Will ping local node. This only checks if the OS process is running and registered with epmd. Timeout: 60000 ms.");
            println!("Ping succeeded");
            Ok(())
        }
        "await_startup" => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(o.timeout_secs);
            loop {
                match api.reachable() {
                    Ok(()) => break Ok(()),
                    Err(Fail(EX_UNAVAILABLE, _)) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => break Err(e),
                }
            }
        }
        "check_running" | "node_health_check" => {
            api.reachable()?;
            say(o, "RabbitMQ on node rabbit@localhost is fully booted and running");
            Ok(())
        }
        "check_alarms" | "check_local_alarms" => {
            api.get("/health/checks/alarms").map_err(|Fail(_, m)| Fail(EX_DATAERR, m))?;
            say(o, "Node reported no alarms, local or clusterwide");
            Ok(())
        }
        "check_virtual_hosts" => {
            api.get("/health/checks/virtual-hosts")?;
            say(o, "Node reported all vhosts as running");
            Ok(())
        }
        "check_port_connectivity" => {
            let ov = api.get("/overview")?;
            let mut ok = Vec::new();
            for l in ov["listeners"].as_array().cloned().unwrap_or_default() {
                let port = l["port"].as_u64().unwrap_or(0) as u16;
                let addr = format!("{}:{port}", o.host);
                let reached =
                    std::net::ToSocketAddrs::to_socket_addrs(&addr).ok().and_then(|mut a| a.next()).is_some_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
                    });
                if !reached {
                    return Err(Fail(EX_DATAERR, format!("Error: connection to port {port} failed")));
                }
                ok.push(port.to_string());
            }
            say(o, &format!("Successfully connected to ports {}", ok.join(", ")));
            Ok(())
        }
        "check_protocol_listener" => {
            let p = arg(o, 1, "protocol")?;
            api.get(&format!("/health/checks/protocol-listener/{}", pct(&p)))
                .map_err(|Fail(_, m)| Fail(EX_DATAERR, m))?;
            say(o, &format!("A listener for protocol {p} is running"));
            Ok(())
        }
        "status" | "cluster_status" => status(o, api),
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// The resource alarms a node reports (`/api/nodes`), as RabbitMQ's status names them.
fn alarm_names(n: &Value) -> Vec<&'static str> {
    [("mem_alarm", "memory"), ("disk_free_alarm", "disk")]
        .into_iter()
        .filter(|(k, _)| n[*k].as_bool() == Some(true))
        .map(|(_, name)| name)
        .collect()
}

fn status(o: &Opts, api: &Api) -> R<()> {
    let ov = api.get("/overview")?;
    let nodes = api.get("/nodes")?;
    let n = nodes.get(0).cloned().unwrap_or(Value::Null);
    if o.json {
        println!(
            "{}",
            json!({"node": ov["node"], "product_name": ov["product_name"], "product_version": ov["product_version"], "rabbitmq_version": ov["rabbitmq_version"], "uptime_ms": n["uptime"], "memory_used": n["mem_used"], "memory_limit": n["mem_limit"], "alarms": alarm_names(&n), "disk_free": n["disk_free"], "disk_free_limit": n["disk_free_limit"], "listeners": ov["listeners"], "file_descriptors": {"used": n["fd_used"], "total": n["fd_total"]}, "totals": ov["object_totals"]})
        );
        return Ok(());
    }
    println!("Status of node {} ...", ov["node"].as_str().unwrap_or(""));
    println!(
        "Runtime\n\nOS PID: {}\nProduct name: {}\nProduct version: {}\nRabbitMQ version: {}",
        cell(&n["os_pid"]),
        cell(&ov["product_name"]),
        cell(&ov["product_version"]),
        cell(&ov["rabbitmq_version"])
    );
    println!("Uptime (seconds): {}", n["uptime"].as_u64().unwrap_or(0) / 1000);
    println!(
        "\nMemory\n\nTotal memory used: {} bytes\nMemory high watermark: {} bytes",
        cell(&n["mem_used"]),
        cell(&n["mem_limit"])
    );
    let alarms = alarm_names(&n);
    println!("\nAlarms\n\n{}", if alarms.is_empty() { "(none)".to_string() } else { alarms.join("\n") });
    println!("\nDisk\n\nFree: {} bytes\nLimit: {} bytes", cell(&n["disk_free"]), cell(&n["disk_free_limit"]));
    println!("\nFile Descriptors\n\nUsed: {}, total: {}", cell(&n["fd_used"]), cell(&n["fd_total"]));
    println!("\nListeners\n");
    for l in ov["listeners"].as_array().cloned().unwrap_or_default() {
        println!(
            "Interface: {}, port: {}, protocol: {}",
            cell(&l["ip_address"]),
            cell(&l["port"]),
            cell(&l["protocol"])
        );
    }
    Ok(())
}

// ---- rabbitmq-streams ----------------------------------------------------------------------------

/// `list_stream_connections`' columns (RabbitMQ's stream `INFO_ITEMS`, and `node`).
const STREAM_CONNECTION_COLUMNS: &[&str] = &[
    "node",
    "conn_name",
    "port",
    "peer_port",
    "host",
    "peer_cert_issuer",
    "peer_cert_subject",
    "peer_cert_validity",
    "peer_host",
    "user",
    "vhost",
    "subscriptions",
    "ssl",
    "ssl_cipher",
    "ssl_hash",
    "ssl_key_exchange",
    "ssl_protocol",
    "connection_state",
    "auth_mechanism",
    "heartbeat",
    "frame_max",
    "client_properties",
    "connected_at",
];
/// What `list_stream_connections` shows without columns (RabbitMQ 3.10's default).
const STREAM_CONNECTION_DEFAULTS: &[&str] = &["conn_name"];
/// `list_stream_consumers`' columns (RabbitMQ's `CONSUMER_INFO_ITEMS`); without columns, all
/// but `node` and `connection_pid`, as RabbitMQ.
const STREAM_CONSUMER_COLUMNS: &[&str] = &[
    "node",
    "connection_pid",
    "subscription_id",
    "stream",
    "messages_consumed",
    "offset",
    "offset_lag",
    "credits",
    "active",
    "activity_status",
    "properties",
];
/// `list_stream_publishers`' columns (RabbitMQ's `PUBLISHER_INFO_ITEMS`); without columns, all
/// but `node` and `connection_pid`, as RabbitMQ.
const STREAM_PUBLISHER_COLUMNS: &[&str] = &[
    "node",
    "connection_pid",
    "publisher_id",
    "stream",
    "reference",
    "messages_published",
    "messages_confirmed",
    "messages_errored",
];
/// `stream_status`' columns (one row per member; a single node has only the writer).
const STREAM_STATUS_COLUMNS: &[&str] =
    &["role", "node", "epoch", "offset", "committed_offset", "first_offset", "readers", "segments"];
/// A stream on one node never changes leader: its epoch stays the first one.
const STREAM_EPOCH: u64 = 1;
/// Partitions of `add_super_stream` without `--partitions` or `--binding-keys` (RabbitMQ's).
const DEFAULT_SUPER_STREAM_PARTITIONS: u32 = 3;
/// The exchange argument that marks a super stream, and the binding argument that orders its
/// partitions (what RabbitMQ's stream manager writes, and the stream protocol's Partitions reads).
const SUPER_STREAM_ARG: &str = "x-super-stream";
const PARTITION_ORDER_ARG: &str = "x-stream-partition-order";
/// `--leader-locator`'s values (accepted; one node leads everything).
const LEADER_LOCATORS: &[&str] = &["client-local", "random", "least-leaders"];

/// A stream consumer's `activity_status`: `up`, or for a single active consumer
/// `single_active` / `waiting`.
fn activity_status(item: &Value) -> Value {
    let single = item["properties"]["single-active-consumer"].as_str() == Some("true");
    let active = item["active"].as_bool().unwrap_or(true);
    json!(match (single, active) {
        (false, _) => "up",
        (true, true) => "single_active",
        (true, false) => "waiting",
    })
}

/// `rabbitmq-streams COMMAND`.
fn streams(o: &Opts, api: &Api) -> R<()> {
    let Some(cmd) = o.args.first().map(String::as_str) else {
        return usage("no command given; try `rabbitmq-streams help`");
    };
    if matches!(cmd, "help" | "--help" | "-h") {
        println!("{STREAMS_HELP}");
        return Ok(());
    }
    if stream_commands(o, api, cmd, &vhost_of(o))? {
        return Ok(());
    }
    usage(&format!("command '{cmd}' is not supported by Warren's rabbitmq-streams; try `rabbitmq-streams help`"))
}

/// `rabbitmq-streams` commands, also answered by `warren ctl` / rabbitmqctl (RabbitMQ's
/// rabbitmqctl lists stream connections, consumers and publishers too). `Ok(false)` when `cmd`
/// is not one of them.
fn stream_commands(o: &Opts, api: &Api, cmd: &str, v: &str) -> R<bool> {
    match cmd {
        "add_super_stream" => add_super_stream(o, api, v),
        "delete_super_stream" => delete_super_stream(o, api, v),
        "list_stream_connections" => list_stream(o, api, v, "stream_connections"),
        "list_stream_consumers" => list_stream(o, api, v, "stream_consumers"),
        "list_stream_publishers" => list_stream(o, api, v, "stream_publishers"),
        "stream_status" => stream_status(o, api, v),
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// The command's words after its name, options (`--name value` / `--name=value`) apart.
struct CommandArgs {
    positional: Vec<String>,
    options: Vec<(String, String)>,
    flags: Vec<String>,
}

/// Split `o.args[1..]`: options in `with_value` take a value, the other `-` words are flags.
fn command_args(o: &Opts, with_value: &[&str]) -> R<CommandArgs> {
    let mut out = CommandArgs { positional: Vec::new(), options: Vec::new(), flags: Vec::new() };
    let mut it = o.args.iter().skip(1);
    while let Some(a) = it.next() {
        if !a.starts_with('-') || a == "-" {
            out.positional.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if with_value.contains(&name.as_str()) {
            let value = match inline {
                Some(v) => v,
                None => {
                    it.next().cloned().ok_or_else(|| Fail(EX_USAGE, format!("Error: option {name} needs a value")))?
                }
            };
            out.options.push((name, value));
        } else {
            out.flags.push(name);
        }
    }
    Ok(out)
}

impl CommandArgs {
    fn get(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A size as RabbitMQ's CLI reads one (`rabbit_resource_monitor_misc:parse_information_unit`):
/// a number with no unit (bytes), `kb` / `mb` / `gb` (powers of 1000), `k` / `kib`, `m` / `mib`,
/// `g` / `gib` (powers of 1024), in either case.
fn information_unit(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "k" | "kib" => 1024,
        "m" | "mib" => 1024 * 1024,
        "g" | "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// An ISO 8601 duration (`PT10M30S`, `P5DT8H`, `P1Y2M`) in seconds, with RabbitMQ's CLI's
/// year (365 days) and month (30 days). None: not one, or zero.
fn iso8601_seconds(s: &str) -> Option<u64> {
    let rest = s.trim().strip_prefix('P')?;
    let (mut total, mut time, mut num, mut any) = (0u64, false, String::new(), false);
    for c in rest.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c == 'T' && !time && num.is_empty() {
            time = true;
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match (time, c) {
            (false, 'Y') => 365 * 86_400,
            (false, 'M') => 30 * 86_400,
            (false, 'W') => 7 * 86_400,
            (false, 'D') => 86_400,
            (true, 'H') => 3600,
            (true, 'M') => 60,
            (true, 'S') => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    (num.is_empty() && any && total > 0).then_some(total)
}

/// The partition streams' queue arguments from `add_super_stream`'s options (as RabbitMQ's CLI
/// turns them into stream arguments).
fn partition_arguments(a: &CommandArgs) -> R<Value> {
    let mut args = json!({"x-queue-type": "stream"});
    let bad = |m: &str| Err(Fail(EX_USAGE, format!("Error: {m}")));
    if let Some(v) = a.get("--max-length-bytes") {
        let Some(n) = information_unit(v) else {
            return bad("Invalid value for --max-length-bytes, valid example values: 100gb, 50mb");
        };
        args["x-max-length-bytes"] = json!(n);
    }
    if let Some(v) = a.get("--max-age") {
        let Some(secs) = iso8601_seconds(v) else {
            return bad("Invalid value for --max-age, the value must a ISO 8601 duration, e.g. PT10M30S for 10 minutes 30 seconds, P5DT8H for 5 days 8 hours.");
        };
        args["x-max-age"] = json!(format!("{secs}s"));
    }
    if let Some(v) = a.get("--stream-max-segment-size-bytes") {
        let Some(n) = information_unit(v) else {
            return bad("Invalid value for --stream-max-segment-size-bytes, valid example values: 100gb, 50mb");
        };
        args["x-stream-max-segment-size-bytes"] = json!(n);
    }
    if let Some(v) = a.get("--leader-locator") {
        if !LEADER_LOCATORS.contains(&v) {
            return bad("Invalid value for --leader-locator, valid values are client-local, random, least-leaders.");
        }
        args["x-queue-leader-locator"] = json!(v);
    }
    if let Some(v) = a.get("--initial-cluster-size") {
        match v.parse::<u32>() {
            Ok(n) if n > 0 => args["x-initial-cluster-size"] = json!(n),
            _ => return bad("Invalid value for --initial-cluster-size, the value must be a positive integer."),
        }
    }
    Ok(args)
}

/// A refusal of the broker as a super stream command's failure (RabbitMQ's `exit_software`);
/// an unreachable broker stays 69.
fn software(f: Fail) -> Fail {
    match f {
        Fail(EX_DATAERR, m) => Fail(EX_SOFTWARE, m),
        other => other,
    }
}

fn is_not_found(r: &R<Value>) -> bool {
    matches!(r, Err(Fail(_, m)) if m.ends_with("(HTTP 404)"))
}

/// `add_super_stream NAME [--partitions N | --binding-keys a,b,c] [stream options]`: a direct
/// exchange NAME (`x-super-stream: true`), durable streams NAME-0..N-1 (or NAME-KEY), each bound
/// with its index (or key) as the routing key and `x-stream-partition-order: i`.
fn add_super_stream(o: &Opts, api: &Api, v: &str) -> R<()> {
    const WITH_VALUE: &[&str] = &[
        "--partitions",
        "--binding-keys",
        "--routing-keys",
        "--max-length-bytes",
        "--max-age",
        "--stream-max-segment-size-bytes",
        "--leader-locator",
        "--initial-cluster-size",
    ];
    let a = command_args(o, WITH_VALUE)?;
    if let Some(f) = a.flags.first() {
        return usage(&format!("add_super_stream: unknown option {f}"));
    }
    let name = match a.positional.as_slice() {
        [] => return usage("not enough arguments: add_super_stream <name> [--partitions N | --binding-keys KEYS]"),
        [n] => n.clone(),
        _ => return usage("too many arguments: add_super_stream <name> [--partitions N | --binding-keys KEYS]"),
    };
    // rabbitmq-compat: --binding-keys is RabbitMQ 3.13's name, --routing-keys the older one.
    let keys = a.get("--binding-keys").or_else(|| a.get("--routing-keys"));
    let (partitions, keys): (Vec<String>, Vec<String>) = match (a.get("--partitions"), keys) {
        (Some(_), Some(_)) => return usage("Specify --partitions or binding keys, not both."),
        (None, Some(k)) => {
            let keys: Vec<String> = k.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect();
            if keys.is_empty() {
                return usage("--binding-keys needs at least one key");
            }
            (keys.iter().map(|k| format!("{name}-{k}")).collect(), keys)
        }
        (p, None) => {
            let n: u32 = match p.map(str::parse::<i64>) {
                None => DEFAULT_SUPER_STREAM_PARTITIONS,
                Some(Ok(n)) if n >= 1 && n <= u32::MAX as i64 => n as u32,
                Some(Ok(_)) => return usage("The partition number must be greater than 0"),
                Some(Err(_)) => return usage("--partitions must be a number"),
            };
            ((0..n).map(|i| format!("{name}-{i}")).collect(), (0..n).map(|i| i.to_string()).collect())
        }
    };
    let qargs = partition_arguments(&a)?;
    say(o, "Adding a super stream ...");
    // As RabbitMQ's stream manager: nothing is created when the exchange or a partition exists.
    let x_path = format!("/exchanges/{}/{}", pct(v), pct(&name));
    match api.get(&x_path) {
        Ok(_) => return Err(Fail(EX_SOFTWARE, format!("Error: there is already an exchange named {name}"))),
        r if is_not_found(&r) => {}
        Err(e) => return Err(software(e)),
    }
    for p in &partitions {
        match api.get(&format!("/queues/{}/{}", pct(v), pct(p))) {
            Ok(_) => return Err(Fail(EX_SOFTWARE, format!("Error: there is already a queue named {p}"))),
            r if is_not_found(&r) => {}
            Err(e) => return Err(software(e)),
        }
    }
    let xbody = json!({"type": "direct", "durable": true, "auto_delete": false, "internal": false,
                       "arguments": {SUPER_STREAM_ARG: true}});
    api.call("PUT", &x_path, Some(&xbody)).map_err(software)?;
    let mut created: Vec<&String> = Vec::new();
    let result = (|| -> R<()> {
        for (i, (p, k)) in partitions.iter().zip(&keys).enumerate() {
            let qbody = json!({"durable": true, "auto_delete": false, "arguments": qargs});
            api.call("PUT", &format!("/queues/{}/{}", pct(v), pct(p)), Some(&qbody))?;
            created.push(p);
            let bbody = json!({"routing_key": k, "arguments": {PARTITION_ORDER_ARG: i}});
            api.call("POST", &format!("/bindings/{}/e/{}/q/{}", pct(v), pct(&name), pct(p)), Some(&bbody))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Undo, best effort: the failure is what gets reported.
        for p in &created {
            let _ = api.call("DELETE", &format!("/queues/{}/{}", pct(v), pct(p)), None);
        }
        let _ = api.call("DELETE", &x_path, None);
        return Err(software(e));
    }
    println!("Super stream {name} has been created");
    Ok(())
}

/// `delete_super_stream NAME`: the streams bound to exchange NAME (its partitions), then the
/// exchange.
fn delete_super_stream(o: &Opts, api: &Api, v: &str) -> R<()> {
    let a = command_args(o, &[])?;
    if let Some(f) = a.flags.first() {
        return usage(&format!("delete_super_stream: unknown option {f}"));
    }
    let name = match a.positional.as_slice() {
        [n] => n.clone(),
        [] => return usage("not enough arguments: delete_super_stream <name>"),
        _ => return usage("too many arguments: delete_super_stream <name>"),
    };
    say(o, "Deleting a super stream ...");
    let x_path = format!("/exchanges/{}/{}", pct(v), pct(&name));
    match api.get(&x_path) {
        r if is_not_found(&r) => {
            return Err(Fail(EX_SOFTWARE, format!("Error: super stream {name} does not exist in vhost {v}")));
        }
        r => r.map_err(software)?,
    };
    let bindings = api.get(&format!("{x_path}/bindings/source")).map_err(software)?;
    let mut partitions: Vec<String> = Vec::new();
    for b in bindings.as_array().into_iter().flatten().filter(|b| b["destination_type"] == "queue") {
        if let Some(d) = b["destination"].as_str().filter(|d| !partitions.iter().any(|p| p == d)) {
            partitions.push(d.to_string());
        }
    }
    for p in &partitions {
        clear_ok(api.call("DELETE", &format!("/queues/{}/{}", pct(v), pct(p)), None)).map_err(software)?;
    }
    api.call("DELETE", &x_path, None).map_err(software)?;
    println!("Super stream {name} has been deleted");
    Ok(())
}

/// `list_stream_connections` / `list_stream_consumers` / `list_stream_publishers`
/// `[--verbose] [COLUMN ...]` of the vhost (`-p`, default `/`).
fn list_stream(o: &Opts, api: &Api, v: &str, kind: &str) -> R<()> {
    let (all, defaults, what): (&[&str], Vec<&str>, &str) = match kind {
        "stream_connections" => (STREAM_CONNECTION_COLUMNS, STREAM_CONNECTION_DEFAULTS.to_vec(), "connections"),
        "stream_consumers" => (STREAM_CONSUMER_COLUMNS, STREAM_CONSUMER_COLUMNS[2..].to_vec(), "consumers"),
        _ => (STREAM_PUBLISHER_COLUMNS, STREAM_PUBLISHER_COLUMNS[2..].to_vec(), "publishers"),
    };
    let a = command_args(o, &[])?;
    let verbose = a.flags.iter().any(|f| f == "--verbose" || f == "-V");
    if let Some(f) = a.flags.iter().find(|f| *f != "--verbose" && *f != "-V") {
        return usage(&format!("unknown option {f}"));
    }
    // Columns as separate words or comma separated, as rabbitmqctl takes them.
    let asked: Vec<String> = a
        .positional
        .iter()
        .flat_map(|c| c.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    let unknown: Vec<&str> = asked.iter().map(String::as_str).filter(|c| !all.contains(c)).collect();
    if !unknown.is_empty() {
        return usage(&format!(
            "Info key(s) {} are not supported; must be one of {}",
            unknown.join(","),
            all.join(", ")
        ));
    }
    let cols: Vec<String> = if verbose {
        all.iter().map(|s| s.to_string()).collect()
    } else if asked.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        asked
    };
    let items = api.get(&format!("/stream/{what}/{}", pct(v)))?;
    let mut items = items.as_array().cloned().unwrap_or_default();
    if kind == "stream_connections" && cols.iter().any(|c| c == "subscriptions") {
        // A connection's subscriptions are its consumers (the API lists them apart).
        let consumers = api.get(&format!("/stream/consumers/{}", pct(v)))?;
        for c in &mut items {
            let n = consumers
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["connection_details"]["name"] == c["name"])
                .count();
            c["subscriptions"] = json!(n);
        }
    }
    print_rows(o, kind, &format!("Listing stream {what} ..."), &items, &cols);
    Ok(())
}

/// `stream_status STREAM`: the stream's one member (this node, the writer) with its offsets,
/// readers and segments, from the stream's queue.
fn stream_status(o: &Opts, api: &Api, v: &str) -> R<()> {
    let a = command_args(o, &[])?;
    if let Some(f) = a.flags.first() {
        // rabbitmq-compat: --tracking (the stream's stored offsets) is not served.
        return usage(&format!("stream_status: option {f} is not supported by Warren"));
    }
    let name = match a.positional.as_slice() {
        [n] => n.clone(),
        [] => return usage("not enough arguments: stream_status <stream>"),
        _ => return usage("too many arguments: stream_status <stream>"),
    };
    let q = match api.get(&format!("/queues/{}/{}", pct(v), pct(&name))) {
        r if is_not_found(&r) => {
            return Err(Fail(EX_DATAERR, format!("Error: stream {name} does not exist in vhost {v}")));
        }
        r => r?,
    };
    if q["type"] != "stream" {
        return Err(Fail(EX_DATAERR, format!("Error: queue {name} in vhost {v} is not a stream")));
    }
    // Readers: AMQP 0-9-1 consumers and stream protocol subscriptions.
    let subscriptions = api
        .get(&format!("/stream/consumers/{}", pct(v)))?
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["queue"]["name"] == name.as_str())
        .count();
    let readers = q["consumers"].as_u64().unwrap_or(0) + subscriptions as u64;
    let row = json!({
        "role": "writer",
        "node": q["node"],
        "epoch": STREAM_EPOCH,
        "offset": q["committed_offset"],
        "committed_offset": q["committed_offset"],
        "first_offset": q["first_offset"],
        "readers": readers,
        "segments": q["segments"],
    });
    let cols: Vec<String> = STREAM_STATUS_COLUMNS.iter().map(|s| s.to_string()).collect();
    let info = format!("Status of stream {name} on node {} ...", cell(&q["node"]));
    print_rows(o, "stream_status", &info, &[row], &cols);
    Ok(())
}

/// `rabbitmq-streams help`.
const STREAMS_HELP: &str = "Usage: rabbitmq-streams [--host H] [--port P] [-u USER] [--password PASS] [-p VHOST] [--formatter json] [-q] COMMAND [ARGS]

Warren's rabbitmq-streams talks to its management API (default 127.0.0.1:15672).

Super streams: add_super_stream NAME [--partitions N | --binding-keys KEY,KEY...]
                 [--max-length-bytes SIZE] [--max-age ISO8601] [--stream-max-segment-size-bytes SIZE]
                 [--leader-locator client-local|random|least-leaders] [--initial-cluster-size N]
               delete_super_stream NAME
Listing:       list_stream_connections [--verbose] [COLUMN...], list_stream_consumers [COLUMN...],
               list_stream_publishers [COLUMN...]
Status:        stream_status STREAM
Exit codes:    0 ok, 64 usage, 65 request refused, 69 broker unreachable, 70 super stream refused";

/// `rabbitmq-plugins`: the truth about each plugin (`crate::plugins`). Built-in ones are always
/// on (enable is a no-op, disable cannot turn them off); missing ones are named with what they
/// would give; nothing is saved (there is nothing to switch).
fn plugins(o: &Opts) -> R<()> {
    use crate::plugins::{status, Status, BUILT_IN, MISSING};
    let Some(cmd) = o.args.first().map(String::as_str) else { return usage("no command given") };
    let names: Vec<&str> = o.args[1..].iter().map(String::as_str).filter(|a| !a.starts_with('-')).collect();
    let flag = |long: &str, short: &str| o.args.iter().any(|a| a == long || a == short);
    let missing_line = |n: &str| match status(n) {
        Status::Missing(why) => format!("{n} (not included in Warren: {why})"),
        _ => format!("{n} (not a plugin Warren knows)"),
    };
    match cmd {
        "enable" => {
            let absent: Vec<String> =
                names.iter().filter(|n| status(n) != Status::BuiltIn).map(|n| missing_line(n)).collect();
            if !absent.is_empty() {
                return Err(Fail(EX_DATAERR, format!("Error: plugins not found: {}", absent.join("; "))));
            }
            say(o, &format!("Enabling plugins on node {}:", crate::node::name()));
            for n in &names {
                say(o, n);
            }
            say(o, "They are built into Warren and always on: nothing to change.");
            Ok(())
        }
        "disable" => {
            for n in &names {
                match status(n) {
                    Status::BuiltIn => {
                        say(o, &format!("{n} is built into Warren and stays on (it cannot be disabled)."))
                    }
                    _ => say(o, &format!("{} is not enabled.", missing_line(n))),
                }
            }
            say(o, "Plugin configuration unchanged.");
            Ok(())
        }
        "is_enabled" => {
            let off: Vec<&&str> = names.iter().filter(|n| status(n) != Status::BuiltIn).collect();
            for n in &names {
                if status(n) == Status::BuiltIn {
                    say(o, &format!("Plugin {n} is enabled"));
                }
            }
            if off.is_empty() {
                Ok(())
            } else {
                let list: Vec<String> = off.iter().map(|n| missing_line(n)).collect();
                Err(Fail(EX_UNAVAILABLE, format!("Error: plugins not enabled: {}", list.join("; "))))
            }
        }
        "list" => {
            let pattern = names.first().map(|p| regex::Regex::new(p)).transpose();
            let pattern = pattern.map_err(|e| Fail(EX_USAGE, format!("Error: invalid pattern: {e}")))?;
            let shown = |n: &str| pattern.as_ref().is_none_or(|re| re.is_match(n));
            let mut all: Vec<(&str, bool)> = BUILT_IN.iter().map(|n| (*n, true)).collect();
            if !flag("--enabled", "-E") && !flag("--implicitly-enabled", "-e") {
                all.extend(MISSING.iter().map(|(n, _)| (*n, false)));
            }
            all.sort();
            if flag("--minimal", "-m") {
                for (n, _) in all.iter().filter(|(n, _)| shown(n)) {
                    println!("{n}");
                }
                return Ok(());
            }
            say(o, &format!("Listing plugins with pattern \"{}\" ...", names.first().unwrap_or(&".*")));
            say(o, " Configured: E = explicitly enabled; e = implicitly enabled");
            say(o, &format!(" | Status: * = running on {}", crate::node::name()));
            say(o, " |/");
            for (n, on) in all.iter().filter(|(n, _)| shown(n)) {
                let mark = if *on { "[E*]" } else { "[  ]" };
                println!("{mark} {n:<40} {}", if *on { RABBIT_VERSION_SHOWN } else { "(not in Warren)" });
            }
            Ok(())
        }
        "set" => {
            let absent: Vec<String> =
                names.iter().filter(|n| status(n) != Status::BuiltIn).map(|n| missing_line(n)).collect();
            if !absent.is_empty() {
                return Err(Fail(EX_DATAERR, format!("Error: plugins not found: {}", absent.join("; "))));
            }
            say(o, "Warren's plugins are built in and always on: nothing to change.");
            Ok(())
        }
        "directories" => {
            say(o, "Warren's plugins are built in: there is no plugins directory.");
            Ok(())
        }
        other => usage(&format!("unknown rabbitmq-plugins command '{other}'")),
    }
}

/// The version `rabbitmq-plugins list` shows for built-in plugins (the RabbitMQ behaviour Warren
/// follows).
const RABBIT_VERSION_SHOWN: &str = "3.10.8";

/// rabbitmqadmin's `key=value` arguments.
fn kv(args: &[String]) -> std::collections::HashMap<String, String> {
    args.iter().filter_map(|a| a.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn admin(o: &Opts, api: &Api) -> R<()> {
    let a = &o.args;
    let (Some(verb), what) = (a.first().map(String::as_str), a.get(1).map(String::as_str)) else {
        return usage("usage: rabbitmqadmin [options] (list|show|declare|delete|purge|publish|get|export|import) ...");
    };
    let v = vhost_of(o);
    let p = kv(a.get(2..).unwrap_or(&[]));
    let bool_of = |k: &str, d: bool| p.get(k).map(|x| x == "true").unwrap_or(d);
    let args_of = |p: &std::collections::HashMap<String, String>| -> R<Value> {
        match p.get("arguments") {
            Some(s) => serde_json::from_str(s).map_err(|e| Fail(EX_USAGE, format!("Error: arguments: {e}"))),
            None => Ok(json!({})),
        }
    };
    let table = |kind: &str, items: Value, defaults: &[&str]| {
        let cols: Vec<String> = {
            let given: Vec<String> = a.get(2..).unwrap_or(&[]).to_vec();
            if given.is_empty() {
                defaults.iter().map(|s| s.to_string()).collect()
            } else {
                given
            }
        };
        let rows = items.as_array().cloned().unwrap_or_default();
        if o.json {
            println!("{}", Value::Array(rows));
        } else {
            println!("{}", cols.join("\t"));
            for r in &rows {
                let row: Vec<String> = cols.iter().map(|c| cell(&column(kind, r, c))).collect();
                println!("{}", row.join("\t"));
            }
        }
    };
    match (verb, what) {
        ("list", Some("queues")) => table("queues", api.get("/queues")?, &["vhost", "name", "messages"]),
        ("list", Some("exchanges")) => table("exchanges", api.get("/exchanges")?, &["vhost", "name", "type"]),
        ("list", Some("bindings")) => {
            table("bindings", api.get("/bindings")?, &["source", "destination", "routing_key"])
        }
        ("list", Some("connections")) => table("connections", api.get("/connections")?, &["name", "user", "channels"]),
        ("list", Some("channels")) => table("channels", api.get("/channels")?, &["name", "user"]),
        ("list", Some("consumers")) => table("consumers", api.get("/consumers")?, &["queue_name", "consumer_tag"]),
        ("list", Some("users")) => table("users", api.get("/users")?, &["name", "tags"]),
        ("list", Some("vhosts")) => table("vhosts", api.get("/vhosts")?, &["name", "messages"]),
        ("list", Some("permissions")) => {
            table("permissions", api.get("/permissions")?, &["user", "vhost", "configure", "write", "read"])
        }
        ("show", Some("overview")) => {
            println!("{}", api.get("/overview")?);
        }
        ("declare", Some("queue")) => {
            let name = p.get("name").cloned().map_or_else(|| usage("name= is required"), Ok)?;
            let mut body = json!({"durable": bool_of("durable", true), "auto_delete": bool_of("auto_delete", false), "arguments": args_of(&p)?});
            if let Some(t) = p.get("queue_type") {
                body["arguments"]["x-queue-type"] = json!(t);
            }
            api.call("PUT", &format!("/queues/{}/{}", pct(&v), pct(&name)), Some(&body))?;
            println!("queue declared");
        }
        ("declare", Some("exchange")) => {
            let name = p.get("name").cloned().map_or_else(|| usage("name= is required"), Ok)?;
            let kind = p.get("type").cloned().map_or_else(|| usage("type= is required"), Ok)?;
            let body = json!({"type": kind, "durable": bool_of("durable", true), "auto_delete": bool_of("auto_delete", false), "internal": bool_of("internal", false), "arguments": args_of(&p)?});
            api.call("PUT", &format!("/exchanges/{}/{}", pct(&v), pct(&name)), Some(&body))?;
            println!("exchange declared");
        }
        ("declare", Some("binding")) => {
            let src = p.get("source").cloned().map_or_else(|| usage("source= is required"), Ok)?;
            let dst = p.get("destination").cloned().map_or_else(|| usage("destination= is required"), Ok)?;
            let kind = if p.get("destination_type").is_some_and(|t| t == "exchange") { "e" } else { "q" };
            let body =
                json!({"routing_key": p.get("routing_key").cloned().unwrap_or_default(), "arguments": args_of(&p)?});
            api.call("POST", &format!("/bindings/{}/e/{}/{kind}/{}", pct(&v), pct(&src), pct(&dst)), Some(&body))?;
            println!("binding declared");
        }
        ("declare", Some("vhost")) => {
            let name = p.get("name").cloned().map_or_else(|| usage("name= is required"), Ok)?;
            api.call("PUT", &format!("/vhosts/{}", pct(&name)), None)?;
            println!("vhost declared");
        }
        ("declare", Some("user")) => {
            let name = p.get("name").cloned().map_or_else(|| usage("name= is required"), Ok)?;
            let body = json!({"password": p.get("password").cloned().unwrap_or_default(), "tags": p.get("tags").cloned().unwrap_or_default()});
            api.call("PUT", &format!("/users/{}", pct(&name)), Some(&body))?;
            println!("user declared");
        }
        ("declare", Some("permission")) => {
            let user = p.get("user").cloned().map_or_else(|| usage("user= is required"), Ok)?;
            let vh = p.get("vhost").cloned().unwrap_or_else(|| v.clone());
            let body = json!({"configure": p.get("configure").cloned().unwrap_or_default(), "write": p.get("write").cloned().unwrap_or_default(), "read": p.get("read").cloned().unwrap_or_default()});
            api.call("PUT", &format!("/permissions/{}/{}", pct(&vh), pct(&user)), Some(&body))?;
            println!("permission declared");
        }
        ("delete", Some(kind @ ("queue" | "exchange" | "vhost" | "user"))) => {
            let name = p.get("name").cloned().map_or_else(|| usage("name= is required"), Ok)?;
            let path = match kind {
                "queue" => format!("/queues/{}/{}", pct(&v), pct(&name)),
                "exchange" => format!("/exchanges/{}/{}", pct(&v), pct(&name)),
                "vhost" => format!("/vhosts/{}", pct(&name)),
                _ => format!("/users/{}", pct(&name)),
            };
            api.call("DELETE", &path, None)?;
            println!("{kind} deleted");
        }
        ("purge", Some("queue")) => {
            let name = p.get("name").cloned().map_or_else(|| usage("name= is required"), Ok)?;
            api.call("DELETE", &format!("/queues/{}/{}/contents", pct(&v), pct(&name)), None)?;
            println!("queue purged");
        }
        ("publish", _) => {
            let p = kv(a.get(1..).unwrap_or(&[]));
            let x = p.get("exchange").cloned().unwrap_or_else(|| "amq.default".into());
            let x = if x.is_empty() { "amq.default".to_string() } else { x };
            let payload = match p.get("payload") {
                Some(s) => s.clone(),
                None => {
                    let mut s = String::new();
                    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s);
                    s
                }
            };
            let props: Value = match p.get("properties") {
                Some(s) => serde_json::from_str(s).map_err(|e| Fail(EX_USAGE, format!("Error: properties: {e}")))?,
                None => json!({}),
            };
            let body = json!({"routing_key": p.get("routing_key").cloned().unwrap_or_default(), "payload": payload, "payload_encoding": p.get("payload_encoding").cloned().unwrap_or_else(|| "string".into()), "properties": props});
            let r = api.call("POST", &format!("/exchanges/{}/{}/publish", pct(&v), pct(&x)), Some(&body))?;
            println!(
                "{}",
                if r["routed"] == json!(true) { "Message published" } else { "Message published but NOT routed" }
            );
        }
        ("get", _) => {
            let p = kv(a.get(1..).unwrap_or(&[]));
            let q = p.get("queue").cloned().map_or_else(|| usage("queue= is required"), Ok)?;
            let count: u64 = p.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
            let ackmode = p.get("ackmode").cloned().unwrap_or_else(|| "ack_requeue_true".into());
            let body = json!({"count": count, "ackmode": ackmode, "encoding": "auto", "truncate": 50000});
            let r = api.call("POST", &format!("/queues/{}/{}/get", pct(&v), pct(&q)), Some(&body))?;
            if o.json {
                println!("{r}");
            } else {
                println!("routing_key\texchange\tmessage_count\tpayload\tpayload_bytes\tpayload_encoding\tredelivered");
                for m in r.as_array().cloned().unwrap_or_default() {
                    let cols = [
                        "routing_key",
                        "exchange",
                        "message_count",
                        "payload",
                        "payload_bytes",
                        "payload_encoding",
                        "redelivered",
                    ];
                    println!("{}", cols.iter().map(|c| cell(&m[*c])).collect::<Vec<_>>().join("\t"));
                }
            }
        }
        ("export", Some(path)) => {
            let d = api.get("/definitions")?;
            std::fs::write(path, serde_json::to_string_pretty(&d).unwrap_or_default())
                .map_err(|e| Fail(EX_DATAERR, format!("Error: {e}")))?;
            println!("Exported definitions for localhost to \"{path}\"");
        }
        ("import", Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| Fail(EX_DATAERR, format!("Error: {e}")))?;
            let d: Value = serde_json::from_str(&text).map_err(|e| Fail(EX_DATAERR, format!("Error: {e}")))?;
            api.call("POST", "/definitions", Some(&d))?;
            println!("Uploaded definitions from \"localhost\" to {path}. The import process may take some time. Consult server logs to track progress.");
        }
        _ => return usage(&format!("unsupported rabbitmqadmin command: {}", a.join(" "))),
    }
    Ok(())
}

/// Split a command line into words (single and double quotes, backslash escapes).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None::<char>, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'') | (None, '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `sh -c "CMD [&& CMD] [|| CMD] [; CMD]"` where each CMD is one of RabbitMQ's tools, `warren`,
/// `true`, `false` or `exit N`: enough for the health checks people write for the rabbitmq image.
fn shell(argv: Vec<String>) -> i32 {
    let Some(pos) = argv.iter().position(|a| a == "-c") else {
        eprintln!("sh: Warren's image has no shell; only `sh -c \"<rabbitmq tool> ...\"` is supported");
        return 2;
    };
    let Some(line) = argv.get(pos + 1) else { return 2 };
    let mut status = 0;
    let mut skip = false;
    let mut cmd: Vec<String> = Vec::new();
    let run_one = |cmd: &mut Vec<String>, status: &mut i32, skip: bool| {
        if cmd.is_empty() || skip {
            cmd.clear();
            return;
        }
        let prog = std::path::Path::new(&cmd[0]).file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        *status = match prog.as_str() {
            "true" => 0,
            "false" => 1,
            "exit" => cmd.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
            "warren" if cmd.get(1).is_some_and(|a| a == "ctl") => run(Tool::Ctl, cmd[2..].to_vec()),
            p => match Tool::from_program(p) {
                // podman-compose wraps a compose health check in a second `/bin/sh -c`.
                Some(Tool::Shell) => shell(cmd[1..].to_vec()),
                Some(t) => run(t, cmd[1..].to_vec()),
                _ => {
                    eprintln!("sh: {p}: not available in Warren's image");
                    127
                }
            },
        };
        cmd.clear();
    };
    for w in words(line) {
        match w.as_str() {
            "&&" | "||" | ";" => {
                run_one(&mut cmd, &mut status, skip);
                skip = match w.as_str() {
                    "&&" => status != 0,
                    "||" => status == 0,
                    _ => false,
                };
            }
            _ => cmd.push(w),
        }
    }
    run_one(&mut cmd, &mut status, skip);
    status
}

/// `warren ctl help`.
const HELP: &str = "Usage: warren ctl [--host H] [--port P] [-u USER] [--password PASS] [-p VHOST] [--formatter json] [-q] COMMAND [ARGS]

Talks to Warren's management API (default 127.0.0.1:15672). The same binary answers as
rabbitmqctl, rabbitmq-diagnostics, rabbitmq-plugins, rabbitmqadmin and rabbitmq-streams when
called by those names.

Listing:      list_queues [COLUMN...], list_exchanges, list_bindings, list_connections, list_channels,
              list_consumers, list_users, list_vhosts, list_permissions, list_user_permissions USER,
              list_topic_permissions [-p VHOST], list_user_topic_permissions USER
Users:        add_user USER PASS, change_password USER PASS, delete_user USER, set_user_tags USER TAG...,
              set_user_limits USER JSON, clear_user_limits USER NAME|all, list_user_limits [--user USER]
              (JSON: {\"max-connections\": N, \"max-channels\": N}; a negative N is no limit)
Vhosts:       add_vhost NAME, delete_vhost NAME, set_vhost_limits [-p VHOST] JSON,
              clear_vhost_limits [-p VHOST], list_vhost_limits [-p VHOST], trace_on [-p VHOST],
              trace_off [-p VHOST]
              (JSON: {\"max-queues\": N, \"max-connections\": N}; a negative N is no limit)
Test controls (Warren's own): reset_vhost [-p VHOST], reset_all [--no-definitions],
              wait_idle [-p VHOST] [--quiet-ms N] [--timeout-ms N]
Permissions:  set_permissions [-p VHOST] USER CONF WRITE READ, clear_permissions [-p VHOST] USER,
              set_topic_permissions [-p VHOST] USER EXCHANGE WRITE READ,
              clear_topic_permissions [-p VHOST] USER [EXCHANGE]
Queues:       purge_queue [-p VHOST] NAME, delete_queue [-p VHOST] NAME
Policies:     set_policy [-p VHOST] [--priority N] [--apply-to X] NAME PATTERN DEFINITION,
              clear_policy [-p VHOST] NAME, list_policies [-p VHOST], set_operator_policy (as
              set_policy), clear_operator_policy [-p VHOST] NAME, list_operator_policies [-p VHOST]
Shovels:      set_parameter [-p VHOST] shovel NAME JSON, clear_parameter [-p VHOST] shovel NAME,
              list_parameters [-p VHOST], shovel_status, delete_shovel [-p VHOST] NAME,
              restart_shovel [-p VHOST] NAME
Definitions:  export_definitions FILE|-, import_definitions FILE
Streams:      list_stream_connections [COLUMN...], list_stream_consumers, list_stream_publishers,
              stream_status STREAM, add_super_stream NAME [--partitions N | --binding-keys K,K...],
              delete_super_stream NAME (see `rabbitmq-streams help`)
Health:       ping, status, check_running, await_startup, check_port_connectivity, check_alarms,
              check_local_alarms, check_virtual_hosts, check_protocol_listener PROTOCOL, version
Exit codes:   0 ok, 64 usage, 65 check failed or request refused, 69 broker unreachable,
              70 super stream command refused";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_and_chains() {
        assert_eq!(
            words(r#"rabbitmq-diagnostics -q "check running" && x 'a b' ''"#),
            vec!["rabbitmq-diagnostics", "-q", "check running", "&&", "x", "a b", ""]
        );
        assert_eq!(shell(vec!["-c".into(), "false || true".into()]), 0);
        assert_eq!(shell(vec!["-c".into(), "true && false".into()]), 1);
        assert_eq!(shell(vec!["-c".into(), "false && true || exit 3".into()]), 3);
        assert_eq!(shell(vec!["-c".into(), "curl -f http://x".into()]), 127);
        assert_eq!(shell(vec!["-c".into(), "/bin/sh -c 'false || exit 4'".into()]), 4);
    }

    #[test]
    fn stream_option_values() {
        assert_eq!(information_unit("20gb"), Some(20_000_000_000));
        assert_eq!(information_unit("500MB"), Some(500_000_000));
        assert_eq!(information_unit("1MiB"), Some(1024 * 1024));
        assert_eq!(information_unit("2k"), Some(2048));
        assert_eq!(information_unit("123"), Some(123));
        assert_eq!(information_unit("lots"), None);
        assert_eq!(information_unit("99999999999999999999gb"), None);
        assert_eq!(iso8601_seconds("PT10M30S"), Some(630));
        assert_eq!(iso8601_seconds("P5DT8H"), Some(5 * 86_400 + 8 * 3600));
        assert_eq!(iso8601_seconds("P1Y2M"), Some(365 * 86_400 + 60 * 86_400));
        for bad in ["", "P", "PT", "10m", "P1H", "PT1D", "P0D", "P1", "PT1M2"] {
            assert_eq!(iso8601_seconds(bad), None, "{bad}");
        }
        assert_eq!(Tool::from_program("/usr/local/bin/rabbitmq-streams"), Some(Tool::Streams));
    }
}
