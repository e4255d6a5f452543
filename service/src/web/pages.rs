//! The dashboard: server-rendered HTML pages, no JavaScript. A person signs in with an API
//! token (kept in an HttpOnly cookie) and sees the fleet overview, a device's attestation
//! history and failures, rollouts with progress bars, and failure issues with a chart of
//! counts per day (inline SVG). Everything shown is escaped: names, ids and app names come
//! from clients and devices.

use super::{AppState, COOKIE, Caller, Error, Result, now, parse_device_id};
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use std::fmt::Write;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/devices/{id}", get(device))
        .route("/rollouts", get(rollouts))
        .route("/issues", get(issues))
}

/// Text made safe for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ago(at: Option<i64>, now: i64) -> String {
    match at {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).max(0);
            match s {
                0..120 => format!("{s} s ago"),
                120..7200 => format!("{} min ago", s / 60),
                7200..172_800 => format!("{} h ago", s / 3600),
                _ => format!("{} days ago", s / 86_400),
            }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}\
header{background:#1f3a5f;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:center}\
header a{color:#dfe8f5;text-decoration:none}header b{font-size:18px;margin-right:16px}\
main{padding:20px 24px}table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:20px}\
th,td{padding:6px 10px;border-bottom:1px solid #e1e5eb;text-align:left;font-size:14px}th{background:#e9edf3}\
.cards{display:flex;gap:16px;margin-bottom:20px}.card{background:#fff;padding:14px 18px;border-radius:6px;min-width:120px;box-shadow:0 1px 2px #0002}\
.card b{display:block;font-size:26px}.ok{color:#17803d}.bad{color:#b3261e}.bar{background:#e1e5eb;height:14px;width:240px;display:flex;border-radius:3px;overflow:hidden}\
.bar span{display:block;height:14px}.u{background:#2e9d57}.f{background:#c8453b}.o{background:#e0a526}code{font-size:12px}.kv th{width:200px}";

fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t} - septa-service</title><style>{STYLE}</style></head>\
         <body><header><b>septa-service</b><a href=\"/\">Fleet</a><a href=\"/rollouts\">Rollouts</a><a href=\"/issues\">Issues</a></header>\
         <main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    ))
}

/// Where pages without a valid token send the browser.
fn to_sign_in() -> Result<Response> {
    Ok(Redirect::to("/login").into_response())
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
    next: Option<String>,
}

/// The sign-in form; with `?token=...&next=/page` (for kiosks and scripted screenshots) it
/// signs in directly and goes to `next`, a path on this site only.
async fn login_page(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> Result<Response> {
    if let Some(token) = query.token {
        let next = query.next.filter(|n| {
            n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        });
        return sign_in(&state, &token, next.as_deref().unwrap_or("/")).await;
    }
    Ok(layout(
        "Sign in",
        "<form method=post action=/login><p>API token: <input name=token type=password size=50> \
         <button>Sign in</button></p></form><p>Create a token with <code>septa service token-create</code>.</p>",
    )
    .into_response())
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Result<Response> {
    sign_in(&state, &form.token, "/").await
}

async fn sign_in(state: &AppState, token: &str, next: &str) -> Result<Response> {
    let token = token.trim();
    let valid = token.len() <= 128
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && state.storage.token(&crate::policy::token_hash(token)).await?.is_some();
    if !valid {
        return Err(Error::new(StatusCode::UNAUTHORIZED, "unknown or revoked API token"));
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")),
            (header::LOCATION, next.to_string()),
        ],
    )
        .into_response())
}

async fn overview(
    State(state): State<AppState>,
    caller: std::result::Result<Caller, Error>,
) -> Result<Response> {
    let Ok(caller) = caller else { return to_sign_in() };
    let now = now();
    let devices = state.storage.devices(&caller.tenant).await?;
    let audit = state.storage.audit(&caller.tenant, now, 7, 7200).await?;
    let trusted = devices.iter().filter(|d| d.trusted == Some(true)).count();
    let untrusted = devices.iter().filter(|d| d.trusted == Some(false)).count();
    let mut body = format!(
        "<div class=cards><div class=card><b>{}</b>devices</div><div class=card><b class=ok>{trusted}</b>trusted</div>\
         <div class=card><b class=bad>{untrusted}</b>untrusted</div><div class=card><b>{}</b>silent &gt; 7 days</div>\
         <div class=card><b>{}</b>rollouts halted</div></div>",
        devices.len(),
        audit.silent.len(),
        audit.halted.len()
    );
    if !audit.shared_keys.is_empty() {
        let _ = write!(
            body,
            "<p class=bad>{} attestation keys seen under more than one device id</p>",
            audit.shared_keys.len()
        );
    }
    body.push_str("<table><tr><th>device</th><th>product</th><th>group</th><th>release</th><th>status</th><th>last check-in</th></tr>");
    for d in devices.iter().take(500) {
        let status = match d.trusted {
            Some(true) => "<span class=ok>trusted</span>",
            Some(false) => "<span class=bad>untrusted</span>",
            None => "not seen",
        };
        let _ = write!(
            body,
            "<tr><td><a href=\"/devices/{id}\"><code>{id}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{status}</td><td>{}</td></tr>",
            esc(&d.product),
            esc(d.group.as_deref().unwrap_or("-")),
            esc(d.release.as_deref().unwrap_or("-")),
            ago(d.last_seen, now),
            id = esc(&d.id),
        );
    }
    body.push_str("</table>");
    if devices.len() > 500 {
        let _ = write!(
            body,
            "<p>{} more devices: see <code>septa service devices</code>.</p>",
            devices.len() - 500
        );
    }
    Ok(layout("Fleet", &body).into_response())
}

async fn device(
    State(state): State<AppState>,
    caller: std::result::Result<Caller, Error>,
    Path(id): Path<String>,
) -> Result<Response> {
    let Ok(caller) = caller else { return to_sign_in() };
    let id = hex::encode(parse_device_id(&id)?);
    let now = now();
    let d = state.storage.device(&caller.tenant, &id).await?;
    let attestations = state.storage.attestations(&caller.tenant, &id, 20).await?;
    let reports = state.storage.reports(&caller.tenant, &id).await?;
    let mut body = format!(
        "<table class=kv><tr><th>product</th><td>{}</td></tr><tr><th>group</th><td>{}</td></tr><tr><th>release</th><td>{}</td></tr>\
         <tr><th>status</th><td>{}</td></tr><tr><th>last check-in</th><td>{}</td></tr><tr><th>certificate expires</th><td>{}</td></tr></table>",
        esc(&d.product),
        esc(d.group.as_deref().unwrap_or("-")),
        esc(d.release.as_deref().unwrap_or("-")),
        match d.trusted {
            Some(true) => "<span class=ok>trusted</span>",
            Some(false) => "<span class=bad>untrusted: measurements of no release</span>",
            None => "not seen yet",
        },
        ago(d.last_seen, now),
        d.cert_not_after.map_or("-".into(), |t| format!("in {} h", (t - now) / 3600)),
    );
    body.push_str("<h2>Attestations</h2><table><tr><th>when</th><th>verdict</th><th>release</th><th>measurements</th></tr>");
    for a in &attestations {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ago(Some(a.at), now),
            if a.trusted { "<span class=ok>trusted</span>" } else { "<span class=bad>untrusted</span>" },
            esc(a.release.as_deref().unwrap_or("-")),
            esc(&a.fingerprint[..16.min(a.fingerprint.len())]),
        );
    }
    body.push_str(
        "</table><h2>Failures</h2><table><tr><th>received</th><th>release</th><th>events</th></tr>",
    );
    for r in &reports {
        let events = hex::decode(&r.raw)
            .ok()
            .and_then(|raw| postcard::from_bytes::<septa_abi::report::Report>(&raw).ok())
            .map(|report| {
                let mut lines = Vec::new();
                septa_abi::report::describe(&report.batch, |l| lines.push(esc(&l.to_string())));
                lines.join("<br>")
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><code>{events}</code></td></tr>",
            ago(Some(r.received_at), now),
            esc(r.release.as_deref().unwrap_or("-"))
        );
    }
    body.push_str("</table>");
    Ok(layout(&format!("Device {id}"), &body).into_response())
}

async fn rollouts(
    State(state): State<AppState>,
    caller: std::result::Result<Caller, Error>,
) -> Result<Response> {
    let Ok(caller) = caller else { return to_sign_in() };
    state.storage.sweep(now()).await?;
    let deployments = state.storage.deployments(&caller.tenant).await?;
    let mut body = String::from(
        "<table><tr><th>release</th><th>group</th><th>phase</th><th>progress</th><th>updated</th><th>failed</th><th>state</th></tr>",
    );
    for d in &deployments {
        let count = |s: &str| d.counts.get(s).copied().unwrap_or(0);
        let updated = count("updated");
        let failed = count("rolled back") + count("timed out");
        let open = count("offered") + count("downloaded") + count("on trial");
        let pct = |n: i64| if d.total == 0 { 0.0 } else { n as f64 * 100.0 / d.total as f64 };
        let phases: Vec<&str> = d.phases.split(',').collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{} % ({} of {})</td><td><div class=bar><span class=u style=\"width:{:.1}%\"></span>\
             <span class=f style=\"width:{:.1}%\"></span><span class=o style=\"width:{:.1}%\"></span></div></td>\
             <td>{updated} of {}</td><td>{failed}</td><td class={}>{}{}</td></tr>",
            esc(&d.release),
            esc(&d.group),
            esc(phases.get(d.phase as usize).copied().unwrap_or("?")),
            d.phase + 1,
            phases.len(),
            pct(updated),
            pct(failed),
            pct(open),
            d.total,
            if d.state == "halted" { "bad" } else { "ok" },
            esc(&d.state),
            d.reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default(),
        );
    }
    body.push_str("</table>");
    Ok(layout("Rollouts", &body).into_response())
}

#[derive(Deserialize)]
struct IssuesQuery {
    #[serde(default = "days")]
    days: u32,
}

fn days() -> u32 {
    14
}

async fn issues(
    State(state): State<AppState>,
    caller: std::result::Result<Caller, Error>,
    Query(query): Query<IssuesQuery>,
) -> Result<Response> {
    let Ok(caller) = caller else { return to_sign_in() };
    let days = query.days.clamp(1, 90) as i64;
    let today = now().div_euclid(86_400);
    let issues = state.storage.issues(&caller.tenant).await?;
    let mut body = String::from(
        "<table><tr><th>app</th><th>kind</th><th>pc</th><th>state</th><th>count</th><th>by release</th><th>per day</th></tr>",
    );
    for issue in &issues {
        let mut per_day = vec![0i64; days as usize];
        let mut by_release = std::collections::BTreeMap::<&str, i64>::new();
        for (release, day, count) in &issue.history {
            *by_release.entry(if release.is_empty() { "unknown" } else { release }).or_default() += count;
            if let Some(slot) =
                (today - day).try_into().ok().and_then(|back: usize| (days as usize).checked_sub(back + 1))
            {
                per_day[slot] += count;
            }
        }
        let max = per_day.iter().copied().max().unwrap_or(0).max(1);
        let mut chart = format!("<svg width={} height=40 role=img aria-label=\"counts per day\">", days * 8);
        for (i, n) in per_day.iter().enumerate() {
            let h = (*n as f64 / max as f64 * 36.0).round();
            let _ = write!(
                chart,
                "<rect x={} y={} width=6 height={h} fill=\"#c8453b\"><title>{n}</title></rect>",
                i * 8,
                38.0 - h
            );
        }
        chart.push_str("<line x1=0 y1=39 x2=1000 y2=39 stroke=\"#889\"/></svg>");
        let releases: Vec<String> = by_release.iter().map(|(r, n)| format!("{}: {n}", esc(r))).collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><code>{:#010x}</code></td><td class={}>{}</td><td>{}</td><td>{}</td><td>{chart}</td></tr>",
            esc(&issue.app),
            esc(&issue.kind),
            issue.pc,
            if issue.state == "open" { "bad" } else { "ok" },
            esc(&issue.state),
            issue.count,
            releases.join("<br>"),
        );
    }
    body.push_str("</table>");
    Ok(layout("Failure issues", &body).into_response())
}
