//! Message-rate and queue-depth history over HTTP, RabbitMQ's way: `GET /api/overview`,
//! `/api/queues[/{vhost}[/{name}]]` and `/api/exchanges/{vhost}/{name}` with
//! `?lengths_age=A&lengths_incr=I` and / or `?msg_rates_age=A&msg_rates_incr=I` (seconds) add
//! `samples` (newest first, `{"sample", "timestamp"}`), `avg` and `avg_rate` to the `*_details`
//! objects: queue depths (`messages`, `messages_ready`, `messages_unacknowledged`) for `lengths`,
//! every `message_stats` counter for `msg_rates`. The web UI draws its charts from them.
//!
//! Recording: [`record`] is called by the rate sampler every [`crate::stats::RATE_INTERVAL`] and
//! feeds [`crate::stats::History`] (the last hour; its doc gives the memory bound: about 7.4 KB
//! per queue, fixed).
//!
//! Runs in: the rate sampler task ([`record`]) and the management server's request tasks
//! ([`samples`], a middleware outside the API router: it only rewrites answers the API already
//! gave, so authentication and permissions are the API's own).
//!
//! # Invariants
//! - Without one of the four parameters a request is passed through untouched (no body is read
//!   or re-encoded).
//! - Only a 200 JSON answer to a GET is changed, and only by adding fields inside existing
//!   `*_details` objects.
//! - Bad parameters (not a whole number, an increment of 0, more than [`MAX_SAMPLES`] samples)
//!   are answered 400 before the API runs (so before authentication: the answer tells nothing
//!   about the broker).
//! - The history's lock is held only to copy values in (the sampler, after reading every queue)
//!   or out (a request, after the API answered): never while a queue or channel lock is taken.
use super::{views, ApiError, Mgmt};
use crate::broker::Broker;
use crate::stats::{self, History, Samples, Series};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Most samples one `*_details` may ask for (`age / incr + 1`): an hour at one per second.
pub const MAX_SAMPLES: u64 = 3601;
/// Largest answer body re-read to add samples (a listing of this many bytes is passed on as is).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Take one history sample of the broker, every queue and every exchange (the rate sampler).
/// Walks every channel's unacked window once (for per-queue unacked counts), as a listing does.
pub fn record(broker: &Broker, now_ms: u64, totals: &crate::counters::Totals) {
    let unacked = views::unacked_by_queue(broker);
    let mut rows = Vec::new();
    let mut xs = Vec::new();
    let (mut ready_all, mut unacked_all) = (0u64, 0u64);
    for v in broker.vhosts() {
        for q in v.queues_snapshot() {
            let ready = q.counts().0 as u64;
            let un = views::unacked_count(&unacked, &q);
            ready_all += ready;
            unacked_all += un;
            let key = views::queue_rate_key(&v.name, &q.name.to_str_lossy());
            rows.push((key, stats::queue_values(ready, un, &q.totals())));
        }
        for x in v.exchanges_snapshot() {
            let t = views::exchange_totals(&x);
            xs.push((views::exchange_key(&v.name, &x.name.to_str_lossy()), [t.published, t.delivered]));
        }
    }
    // Everything read first, then the history's lock taken once, briefly.
    let mut h = broker.stats.history.lock();
    h.begin(now_ms);
    h.record_global(stats::global_values(ready_all, unacked_all, totals));
    let mut live = HashSet::with_capacity(rows.len() + xs.len());
    for (k, v) in rows {
        h.record_queue(&k, v);
        live.insert(k);
    }
    for (k, v) in xs {
        h.record_exchange(&k, v);
        live.insert(k);
    }
    h.retain(&live);
}

/// A requested range: `count` samples `incr_ms` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Milliseconds between samples (`*_incr`).
    pub incr_ms: u64,
    /// Samples: `age / incr + 1`.
    pub count: usize,
}

/// The range named by `{prefix}_age` and `{prefix}_incr`, if asked for.
fn range(q: &HashMap<String, String>, prefix: &str) -> Result<Option<Range>, ApiError> {
    let age = q.get(&format!("{prefix}_age"));
    let incr = q.get(&format!("{prefix}_incr"));
    let (age, incr) = match (age, incr) {
        (None, None) => return Ok(None),
        (Some(a), Some(i)) => (a, i),
        _ => return Err(ApiError::bad_request(format!("{prefix}_age and {prefix}_incr go together"))),
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (Some(age), Some(incr)) = (num(age), num(incr)) else {
        return Err(ApiError::bad_request(format!("{prefix}_age and {prefix}_incr must be whole seconds")));
    };
    if incr == 0 || age / incr + 1 > MAX_SAMPLES {
        return Err(ApiError::bad_request(format!(
            "{prefix}_incr must be at least 1 and {prefix}_age / {prefix}_incr at most {}",
            MAX_SAMPLES - 1
        )));
    }
    Ok(Some(Range { incr_ms: incr * 1000, count: (age / incr + 1) as usize }))
}

/// Which object's history a path's answer shows.
enum Target {
    /// `/api/overview`.
    Overview,
    /// `/api/queues...`: each queue in the answer (one, a list or a page).
    Queues,
    /// `/api/exchanges/{vhost}/{name}`.
    Exchange,
}

fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/api/")?.trim_end_matches('/');
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["overview"] => Some(Target::Overview),
        ["queues"] | ["queues", _] | ["queues", _, _] => Some(Target::Queues),
        ["exchanges", _] | ["exchanges", _, _] | ["exchanges"] => Some(Target::Exchange),
        _ => None,
    }
}

/// Middleware: add history samples to the answers that asked for them (see the module doc).
pub async fn samples(State(m): State<Arc<Mgmt>>, req: Request, next: Next) -> Response {
    let asks = req.method() == Method::GET
        && req.uri().query().is_some_and(|q| q.contains("lengths_") || q.contains("msg_rates_"));
    let Some(kind) = target(req.uri().path()).filter(|_| asks) else { return next.run(req).await };
    let q: HashMap<String, String> =
        axum::extract::Query::try_from_uri(req.uri()).map(|x: axum::extract::Query<_>| x.0).unwrap_or_default();
    let (lengths, rates) = match (range(&q, "lengths"), range(&q, "msg_rates")) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    if lengths.is_none() && rates.is_none() {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status() != StatusCode::OK || !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "answer too large".into())
            .into_response();
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    {
        let h = m.broker.stats.history.lock();
        // RabbitMQ ends the range at the current time rounded down to the increment.
        let ask = Ask { now: crate::clock::unix_ms(), lengths, rates };
        let add = |o: &mut Value| match kind {
            Target::Overview => add_global(&h, o, ask),
            Target::Queues => add_queue(&h, o, ask),
            Target::Exchange => add_exchange(&h, o, Ask { lengths: None, ..ask }),
        };
        match &mut v {
            Value::Array(items) => items.iter_mut().for_each(add),
            Value::Object(o) if o.get("items").is_some_and(Value::is_array) => {
                if let Some(Value::Array(items)) = o.get_mut("items") {
                    items.iter_mut().for_each(add);
                }
            }
            o => add(o),
        }
    }
    let mut out = axum::Json(v).into_response();
    *out.status_mut() = parts.status;
    out
}

/// The `*_details` object `key` of `o`, made if missing.
fn details<'a>(o: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let d = o.entry(format!("{key}_details")).or_insert_with(|| json!({"rate": 0.0}));
    d.as_object_mut()
}

/// Put `s` into a details object, with RabbitMQ's `avg` (mean of the samples) and `avg_rate`
/// (change per second from the oldest sample to the newest).
fn put(d: &mut Map<String, Value>, s: &Samples) {
    let n = s.points.len().max(1) as f64;
    let avg = s.points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let avg_rate = match (s.points.first(), s.points.last()) {
        (Some(a), Some(b)) if a.0 > b.0 => (a.1 as f64 - b.1 as f64) / ((a.0 - b.0) as f64 / 1000.0),
        _ => 0.0,
    };
    let samples: Vec<Value> = s.points.iter().map(|(t, v)| json!({"sample": v, "timestamp": t})).collect();
    d.insert("samples".into(), Value::Array(samples));
    d.insert("avg".into(), json!(avg));
    d.insert("avg_rate".into(), json!(avg_rate));
}

/// Pointwise sum of sample lists taken at the same instants.
fn sum(list: &[Samples]) -> Samples {
    let mut out = list.first().cloned().unwrap_or(Samples { points: Vec::new() });
    for s in list.iter().skip(1) {
        for (o, p) in out.points.iter_mut().zip(&s.points) {
            o.1 += p.1;
        }
    }
    out
}

/// What a request asked for.
#[derive(Debug, Clone, Copy)]
struct Ask {
    /// Unix ms of the request: the newest sample is at this time rounded down to the increment.
    now: u64,
    /// Queue-depth samples.
    lengths: Option<Range>,
    /// Counter samples.
    rates: Option<Range>,
}

/// Add the samples of `series` (fields named by `fields`, gauges first) to `o`: gauges as
/// `messages_ready` / `messages_unacknowledged` / `messages` details in `lengths_at` (the object
/// itself for a queue, `queue_totals` for the overview), counters in `message_stats`.
fn add_series<const N: usize>(
    h: &History,
    series: &Series<N>,
    fields: &[&str; N],
    gauges: usize,
    o: &mut Value,
    lengths_at: Option<&str>,
    ask: Ask,
) {
    let now = ask.now;
    let take = |k: usize, r: Range| h.samples(series, k, k < gauges, now - now % r.incr_ms, r.incr_ms, r.count);
    if let Some(r) = ask.lengths.filter(|_| gauges > 0) {
        let target = match lengths_at {
            Some(k) => o.get_mut(k),
            None => Some(&mut *o),
        };
        if let Some(Value::Object(t)) = target {
            let all: Vec<Samples> = (0..gauges).map(|k| take(k, r)).collect();
            for (k, s) in all.iter().enumerate() {
                if let Some(d) = details(t, fields[k]) {
                    put(d, s);
                }
            }
            if let Some(d) = details(t, "messages") {
                put(d, &sum(&all));
            }
        }
    }
    if let Some(r) = ask.rates {
        if let Some(Value::Object(ms)) = o.get_mut("message_stats") {
            let all: Vec<Samples> = (gauges..N).map(|k| take(k, r)).collect();
            let mut deliver_get = Vec::new();
            for (i, s) in all.iter().enumerate() {
                let name = fields[gauges + i];
                if matches!(name, "deliver" | "deliver_no_ack" | "get" | "get_no_ack") {
                    deliver_get.push(s.clone());
                }
                if let Some(d) = details(ms, name) {
                    put(d, s);
                }
            }
            if !deliver_get.is_empty() {
                if let Some(d) = details(ms, "deliver_get") {
                    put(d, &sum(&deliver_get));
                }
            }
        }
    }
}

/// The overview's samples. rabbitmq-compat: they are broker-wide for every user (as the
/// overview's `message_stats` already are here), where RabbitMQ sums the user's vhosts.
fn add_global(h: &History, o: &mut Value, ask: Ask) {
    add_series(h, &h.global, &stats::GLOBAL_FIELDS, stats::GAUGES, o, Some("queue_totals"), ask);
}

fn name_of(o: &Value) -> Option<(String, String)> {
    Some((o.get("vhost")?.as_str()?.to_string(), o.get("name")?.as_str()?.to_string()))
}

fn add_queue(h: &History, o: &mut Value, ask: Ask) {
    let Some((vhost, name)) = name_of(o) else { return };
    let empty;
    let series = match h.queues.get(&views::queue_rate_key(&vhost, &name)) {
        Some(s) => s,
        None => {
            // Declared since the last sample: all zeros, in the same shape.
            empty = Series::<10>::default();
            &empty
        }
    };
    add_series(h, series, &stats::QUEUE_FIELDS, stats::GAUGES, o, None, ask);
}

fn add_exchange(h: &History, o: &mut Value, ask: Ask) {
    let Some((vhost, name)) = name_of(o) else { return };
    let Some(series) = h.exchanges.get(&views::exchange_key(&vhost, &name)) else { return };
    add_series(h, series, &stats::EXCHANGE_FIELDS, 0, o, None, ask);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ranges() {
        assert_eq!(range(&q(&[]), "lengths").ok(), Some(None));
        let r = range(&q(&[("lengths_age", "60"), ("lengths_incr", "5")]), "lengths").ok().flatten();
        assert_eq!(r, Some(Range { incr_ms: 5000, count: 13 }));
        assert!(range(&q(&[("lengths_age", "60")]), "lengths").is_err());
        assert!(range(&q(&[("lengths_age", "x"), ("lengths_incr", "5")]), "lengths").is_err());
        assert!(range(&q(&[("lengths_age", "60"), ("lengths_incr", "0")]), "lengths").is_err());
        assert!(range(&q(&[("lengths_age", "86400"), ("lengths_incr", "1")]), "lengths").is_err());
    }

    #[test]
    fn samples_added_to_a_queue() {
        let mut h = History::default();
        for i in 0..3u64 {
            h.begin(100_000 + i * 5_000);
            let t = crate::counters::Totals { published: 10 * i, delivered: i, got: 1, ..Default::default() };
            h.record_queue(&views::queue_rate_key("/", "q"), stats::queue_values(i, 1, &t));
        }
        let mut o = json!({"name": "q", "vhost": "/", "messages_details": {"rate": 0.0},
            "message_stats": {"publish": 20, "publish_details": {"rate": 2.0}}});
        let r = Range { incr_ms: 5000, count: 3 };
        add_queue(&h, &mut o, Ask { now: 110_000, lengths: Some(r), rates: Some(r) });
        let samples = |v: &Value| {
            v["samples"].as_array().map(|a| a.iter().filter_map(|s| s["sample"].as_u64()).collect::<Vec<_>>())
        };
        assert_eq!(samples(&o["messages_ready_details"]), Some(vec![2, 1, 0]));
        assert_eq!(samples(&o["messages_details"]), Some(vec![3, 2, 1]));
        assert_eq!(samples(&o["message_stats"]["publish_details"]), Some(vec![20, 10, 0]));
        assert_eq!(samples(&o["message_stats"]["deliver_get_details"]), Some(vec![3, 2, 1]));
        assert_eq!(o["message_stats"]["publish_details"]["rate"], json!(2.0));
        assert_eq!(o["message_stats"]["publish_details"]["avg_rate"], json!(2.0));
        assert_eq!(o["message_stats"]["publish_details"]["samples"][0]["timestamp"], json!(110_000));
    }
}
